# The install test: `cmake --install` of the build into a fresh prefix, then configure, build
# and run tests/install (a separate project using find_package(topk)) against that prefix.
# Arguments (-D): BUILD_DIR, SRC, WORK, CXX, LAUNCHER (optional).
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGV}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# What must be there, and what must not: no private header of src/ leaks into the prefix.
foreach(f include/topk/core.h include/topk/attention.h bin/topk)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install: ${f} is missing from the prefix")
  endif()
endforeach()
file(GLOB_RECURSE headers RELATIVE ${prefix} ${prefix}/include/*)
foreach(h ${headers})
  if(NOT h MATCHES "^include/topk/[a-z_]+\\.h$")
    message(FATAL_ERROR "install: unexpected file ${h} (only include/topk/*.h is public)")
  endif()
endforeach()
file(GLOB_RECURSE configs ${prefix}/*/topkConfig.cmake)
if(NOT configs)
  message(FATAL_ERROR "install: no topkConfig.cmake in the prefix")
endif()

set(gen)
find_program(NINJA ninja)
if(NINJA)
  set(gen -G Ninja)
endif()
set(launcher)
if(LAUNCHER)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
run(${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/build ${gen} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_CXX_COMPILER=${CXX} ${launcher} -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${WORK}/build/consumer)
message(STATUS "${last_output}")
