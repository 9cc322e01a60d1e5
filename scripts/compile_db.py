"""Reading compile_commands.json entries for tools that run the compile commands themselves
(scripts/check_layers.py, scripts/clang_tidy_changed.py)."""
import shlex


def arguments(entry):
    """The entry's command as a list of arguments."""
    return entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])


def without_pch(args):
    """args without the precompiled header's options (cmake/PrecompiledHeaders.cmake): gcc's
    -Winvalid-pch and -include .../cmake_pch.hxx, clang's -Xclang -include-pch -Xclang FILE
    and -Xclang -include -Xclang .../cmake_pch.hxx. Another compiler (clang-tidy reading a gcc
    build's commands) cannot load the precompiled header, and a preprocessing probe must not
    pull its headers in; the files include what they use themselves."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "-Winvalid-pch":
            i += 1
        elif a == "-include" and i + 1 < len(args) and "cmake_pch" in args[i + 1]:
            i += 2
        elif (a == "-Xclang" and i + 3 < len(args) and args[i + 1] in ("-include-pch", "-include")
              and args[i + 2] == "-Xclang" and "cmake_pch" in args[i + 3]):
            i += 4
        else:
            out.append(a)
            i += 1
    return out
