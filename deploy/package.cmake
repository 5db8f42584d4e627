# Install rules and the Debian package (CPack DEB), included from the top-level
# CMakeLists.txt. `bash deploy/package.sh` builds build-deb/ferry_<version>_<arch>.deb:
#   /usr/bin/{ferry-coordinator,ferry-worker,ferryctl}
#   /lib/systemd/system/{ferry-coordinator.service,ferry-worker@.service}
#   /usr/share/doc/ferry/{README.md,ferry.env.example}
# Depends: the shared libraries the executables link (dpkg-shlibdeps) and
# adduser (the maintainer scripts create the system user "ferry").
install(TARGETS ferry-coordinator ferry-worker ferryctl RUNTIME DESTINATION bin)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/ferry-coordinator.service
              ${PROJECT_SOURCE_DIR}/deploy/systemd/ferry-worker@.service
        DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/deploy/ferry.env.example
        DESTINATION share/doc/ferry)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "ferry maintainers <ferry@example.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "moves a legacy store into a new store with a fleet of workers, crash-safe")
set(CPACK_PACKAGE_DESCRIPTION
    "ferry-coordinator plans the legacy store's key space into ranges and leases them to
ferry-worker processes over ZeroMQ; workers copy their ranges in fenced, idempotent
batches; ferryctl watches and steers the migration. SQLite and PostgreSQL stores.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
