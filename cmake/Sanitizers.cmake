# Sanitizer and fuzzing builds (see fuzz/README.md and scripts/test.sh).
#
# BULKHEAD_SANITIZE: a comma-separated -fsanitize= list applied to every target, generated code
#   included: "address,undefined" or "thread" (ASan and TSan cannot be combined). UBSan
#   findings abort the process (-fno-sanitize-recover=undefined), so a test with one fails.
#   Libraries from Debian (gRPC, protobuf, absl, libarchive, yaml-cpp) are not instrumented.
# BULKHEAD_FUZZ: builds fuzz/ as libFuzzer binaries (clang only); every other target gets the
#   coverage instrumentation (-fsanitize=fuzzer-no-link). Implies address,undefined unless
#   BULKHEAD_SANITIZE says otherwise. Without it, fuzz/ builds replay programs that feed the
#   seed corpora to the same entry points (an ordinary CTest test).
set(BULKHEAD_SANITIZE "" CACHE STRING
    "Sanitizers for every target: empty, address,undefined (or a subset), or thread")
option(BULKHEAD_FUZZ "Build fuzz/ as libFuzzer targets (clang only)" OFF)

if(BULKHEAD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "BULKHEAD_FUZZ=ON needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(BULKHEAD_SANITIZE STREQUAL "")
    set(BULKHEAD_SANITIZE "address,undefined")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(NOT BULKHEAD_SANITIZE STREQUAL "")
  string(REPLACE "," ";" _bulkhead_sanitizers "${BULKHEAD_SANITIZE}")
  foreach(s IN LISTS _bulkhead_sanitizers)
    if(NOT s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "BULKHEAD_SANITIZE: unknown sanitizer \"${s}\" in \"${BULKHEAD_SANITIZE}\""
                          " (address, undefined, thread, leak)")
    endif()
  endforeach()
  if("thread" IN_LIST _bulkhead_sanitizers AND "address" IN_LIST _bulkhead_sanitizers)
    message(FATAL_ERROR "BULKHEAD_SANITIZE: thread and address cannot be combined")
  endif()
  add_compile_options(-fsanitize=${BULKHEAD_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${BULKHEAD_SANITIZE})
  if("undefined" IN_LIST _bulkhead_sanitizers)
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
  message(STATUS "bulkhead: sanitizers ${BULKHEAD_SANITIZE}")
endif()
