# Install rules: the public headers (include/topk, plain C++20), the static library (and the
# CUDA backend's library when it is built), the topk tool, and a CMake package so that another
# project can write
#     find_package(topk 0.1 REQUIRED)
#     target_link_libraries(app PRIVATE topk::topk)
# Private headers under src/ are not installed: the library's API is include/topk only.
include(CMakePackageConfigHelpers)
set(TOPK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/topk)

install(DIRECTORY include/topk DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

set(TOPK_EXPORTED_TARGETS topk_lib)
if(TOPK_CUDA)
  list(APPEND TOPK_EXPORTED_TARGETS topk_cuda)
endif()
install(TARGETS ${TOPK_EXPORTED_TARGETS} EXPORT topkTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS topk RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT topkTargets NAMESPACE topk:: DESTINATION ${TOPK_CMAKE_DIR})

configure_package_config_file(cmake/topkConfig.cmake.in
  ${PROJECT_BINARY_DIR}/topkConfig.cmake INSTALL_DESTINATION ${TOPK_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/topkConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/topkConfig.cmake ${PROJECT_BINARY_DIR}/topkConfigVersion.cmake
        DESTINATION ${TOPK_CMAKE_DIR})
