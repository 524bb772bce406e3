# Turns one text file into a C string: const char NAME[] and const size_t NAME_len, the
# file's bytes (CR dropped) without a terminating NUL counted. The escaping is
# daemon/schema/embed.cmake's, so both embedded kinds of text go through the same rules.
# Invoked as: cmake -DOUT=file.c -DNAME=symbol -DIN=file -DHEADER=decl.h -P embed.cmake
# HEADER declares both, so the compiler checks the definitions against it.
if(NOT DEFINED IN OR NOT DEFINED OUT OR NOT DEFINED NAME OR NOT DEFINED HEADER)
    message(FATAL_ERROR "embed.cmake: needs -DIN=, -DOUT=, -DNAME= and -DHEADER=")
endif()
file(READ ${IN} text)
if(text STREQUAL "")
    message(FATAL_ERROR "embed.cmake: '${IN}' is empty")
endif()
# Order matters: backslashes first. "?" is escaped because -std=c11 enables trigraphs
# ("??)" would turn into "]"); CR is dropped so a CRLF checkout embeds the same bytes.
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "?" "\\?" text "${text}")
string(REPLACE "\r" "" text "${text}")
string(REPLACE "\t" "\\t" text "${text}")
string(REPLACE "\n" "\\n\"\n    \"" text "${text}")
get_filename_component(base ${IN} NAME)
file(WRITE ${OUT} "/* Generated from ${base} by daemon/openapi/embed.cmake; do not edit. */\n#include \"${HEADER}\"\n\nconst char ${NAME}[] =\n    \"${text}\";\nconst size_t ${NAME}_len = sizeof(${NAME}) - 1;\n")
