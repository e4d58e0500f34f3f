# `cmake --install`: the public headers, libconvcore.a and a CMake package, so that another project
# can write
#   find_package(convcore CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE convcore::convcore)
# The package config finds OpenMP for the consumer when the library was built with it.
include(CMakePackageConfigHelpers)

set(CONVCORE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/convcore"
    CACHE STRING "Where the CMake package files are installed, relative to the prefix")

install(DIRECTORY cpp/include/convcore DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS convcore_core EXPORT convcoreTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(EXPORT convcoreTargets NAMESPACE convcore:: DESTINATION "${CONVCORE_INSTALL_CMAKEDIR}")

# Read by convcoreConfig.cmake.in: whether the consumer must find OpenMP too (the library links
# it when cpp/CMakeLists.txt found it).
get_target_property(_convcore_links convcore_core INTERFACE_LINK_LIBRARIES)
if("OpenMP::OpenMP_CXX" IN_LIST _convcore_links)
  set(CONVCORE_WITH_OPENMP ON)
else()
  set(CONVCORE_WITH_OPENMP OFF)
endif()
configure_package_config_file(cmake/convcoreConfig.cmake.in
                              "${PROJECT_BINARY_DIR}/convcoreConfig.cmake"
                              INSTALL_DESTINATION "${CONVCORE_INSTALL_CMAKEDIR}")
# 0.x: a minor release may break the API, so only the same minor version is compatible.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/convcoreConfigVersion.cmake"
                                 COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/convcoreConfig.cmake"
              "${PROJECT_BINARY_DIR}/convcoreConfigVersion.cmake"
        DESTINATION "${CONVCORE_INSTALL_CMAKEDIR}")
