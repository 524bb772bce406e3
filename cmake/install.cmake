# install.cmake - what `make install` puts where (README.md, "Install"). Paths are relative to
# the prefix (CMAKE_INSTALL_PREFIX, or `cmake --install --prefix`, default /usr/local), and
# everything goes under $DESTDIR when it is set:
#
#   bin/vendd, bin/vendctl                 the daemon, and the operator's CLI once it exists
#   bin/vend-check                         the invariant checker (read-only on a database)
#   share/man/man8/vendd.8, man1/vendctl.1 their manuals, and man1/vend-check.1
#   lib/systemd/system/vendd.service       the unit, its paths rewritten to this prefix
#   share/doc/vendd/                       README.md, CONFIG.md, HTTP-API.md, openapi.json
#   share/doc/vendd/examples/              vendd.env.example; mosquitto/ dev.conf, prod.conf,
#                                          vendd.acl
#
# Nothing goes to /etc: the configuration is the operator's (copy the example to
# /etc/vendd/vendd.env, where the unit reads it). The target vend-installables builds what
# is installed and nothing else (`make install` builds it, not the tests).
include(GNUInstallDirs)

set(VEND_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "directory of the systemd unit: relative to the install prefix, or absolute")
set(vend_docdir ${CMAKE_INSTALL_DATAROOTDIR}/doc/vendd)

add_custom_target(vend-installables)
add_dependencies(vend-installables vendd vend-check)

install(TARGETS vendd vend-check RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/daemon/vendd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_SOURCE_DIR}/tools/vend-check/vend-check.1
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/CONFIG.md
              ${PROJECT_SOURCE_DIR}/docs/HTTP-API.md
              ${PROJECT_SOURCE_DIR}/daemon/openapi/openapi.json
        DESTINATION ${vend_docdir})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/vendd.env.example DESTINATION ${vend_docdir}/examples)
file(GLOB vend_mosquitto_examples CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/deploy/mosquitto/*.conf)
install(FILES ${vend_mosquitto_examples} ${PROJECT_SOURCE_DIR}/deploy/mosquitto/vendd.acl
        DESTINATION ${vend_docdir}/examples/mosquitto)

# deploy/systemd/vendd.service names /usr/bin/vendd and /usr/share/doc/vendd, a package's
# paths (prefix /usr). The installed copy names where this install puts them; the prefix is
# the one in force at install time, so `cmake --install --prefix` gets it right too.
install(CODE "
    set(unit_dir \"${VEND_SYSTEMD_UNITDIR}\")
    if(NOT IS_ABSOLUTE \"\${unit_dir}\")
        set(unit_dir \"\${CMAKE_INSTALL_PREFIX}/\${unit_dir}\")
    endif()
    file(READ \"${PROJECT_SOURCE_DIR}/deploy/systemd/vendd.service\" unit)
    string(REPLACE \"/usr/bin/vendd\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/vendd\"
           unit \"\${unit}\")
    string(REPLACE \"file:///usr/share/doc/vendd/\"
           \"file://\${CMAKE_INSTALL_PREFIX}/${vend_docdir}/\" unit \"\${unit}\")
    file(WRITE \"${CMAKE_CURRENT_BINARY_DIR}/install/vendd.service\" \"\${unit}\")
    file(INSTALL DESTINATION \"\${unit_dir}\" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
         GROUP_READ WORLD_READ FILES \"${CMAKE_CURRENT_BINARY_DIR}/install/vendd.service\")
")

# vendctl is added by its own directory, which may come after this file: look at the end of
# the top directory, and install it only if it is there.
function(vend_install_vendctl)
    if(NOT TARGET vendctl)
        return()
    endif()
    add_dependencies(vend-installables vendctl)
    install(TARGETS vendctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    if(EXISTS ${PROJECT_SOURCE_DIR}/vendctl/vendctl.1)
        install(FILES ${PROJECT_SOURCE_DIR}/vendctl/vendctl.1
                DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
    endif()
endfunction()
cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL vend_install_vendctl)
