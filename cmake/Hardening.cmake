# Hardening of every binary, as Debian's dpkg-buildflags (hardening=+all) would add them: the
# agent runs as root on hosts an intruder controls, so its binaries get every cheap defence
# even when built by hand. Stack protector, fortified libc calls (needs optimisation), full
# RELRO and immediate binding; Debian's gcc already builds position-independent executables.
# Sanitizer and fuzz builds skip it (ASan replaces the same libc calls).
option(BULKHEAD_HARDEN "Stack protector, _FORTIFY_SOURCE=2, -z relro -z now" ON)
if(BULKHEAD_HARDEN AND BULKHEAD_SANITIZE STREQUAL "" AND NOT BULKHEAD_FUZZ)
  add_compile_options(-fstack-protector-strong -fstack-clash-protection
                      "$<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>")
  add_link_options("LINKER:-z,relro" "LINKER:-z,now")
endif()
