# The linker: LLVM's lld when it is installed (scripts/install-deps.sh installs it), for gcc and
# clang alike. It links the many test programs several times faster than GNU ld, which counts
# on CI's two cores; the programs it writes are the same (RELRO, BIND_NOW and the build id
# included). BULKHEAD_LLD=OFF keeps the compiler's default linker.
option(BULKHEAD_LLD "Link with lld when it is installed" ON)
if(BULKHEAD_LLD)
  find_program(BULKHEAD_LD_LLD NAMES ld.lld)
  if(BULKHEAD_LD_LLD)
    add_link_options(-fuse-ld=lld)
    message(STATUS "bulkhead: linking with ${BULKHEAD_LD_LLD}")
  endif()
endif()
