# Turns the migration files into a C array: {version, name, sql}, in file order.
# Invoked as: cmake -DOUT=file.c -DNAME=symbol -DFILES=a.sql;b.sql -P embed.cmake
#
# Files are named NNNN_name.sql; versions must start at 1 and have no gaps, which the
# runner (daemon/src/db.c) relies on, so a misnamed file fails the build here instead.
set(body "")
set(count 0)
foreach(f ${FILES})
    get_filename_component(base ${f} NAME_WE)
    if(NOT base MATCHES "^[0-9]+_[A-Za-z0-9_]+$")
        message(FATAL_ERROR "embed.cmake: migration '${f}' is not named NNNN_name.sql")
    endif()
    string(REGEX MATCH "^[0-9]+" ver ${base})
    math(EXPR ver "${ver}")
    math(EXPR want "${count} + 1")
    if(NOT ver EQUAL want)
        message(FATAL_ERROR "embed.cmake: migration '${f}' has version ${ver}, expected ${want}")
    endif()
    file(READ ${f} sql)
    # Order matters: backslashes first. "?" is escaped because -std=c11 enables trigraphs
    # ("??)" in a comment would turn into "]"); CR is dropped so CRLF files embed the same.
    string(REPLACE "\\" "\\\\" sql "${sql}")
    string(REPLACE "\"" "\\\"" sql "${sql}")
    string(REPLACE "?" "\\?" sql "${sql}")
    string(REPLACE "\r" "" sql "${sql}")
    string(REPLACE "\t" "\\t" sql "${sql}")
    string(REPLACE "\n" "\\n\"\n    \"" sql "${sql}")
    string(APPEND body "    {${ver}, \"${base}\",\n    \"${sql}\"},\n")
    set(count ${want})
endforeach()
if(count EQUAL 0)
    message(FATAL_ERROR "embed.cmake: no migration files for ${NAME}")
endif()
file(WRITE ${OUT} "/* Generated from daemon/schema by embed.cmake; do not edit. */\n#include \"schema.h\"\n\nconst struct schema_migration ${NAME}[] = {\n${body}};\nconst int ${NAME}_count = ${count};\n")
