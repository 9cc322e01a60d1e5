// Line- and field-oriented text from the system (/proc files, /etc/os-release, loginctl's
// output). Views into the caller's text, which must outlive them. (Debian's abseil has its own
// string_view type, so absl::StrSplit does not take or give std::string_view.)
#pragma once

#include <string_view>
#include <vector>

namespace bulkhead {

// The lines of `text` without their '\n'. A last line without '\n' counts; nothing follows a
// final '\n': "a\nb" and "a\nb\n" are two lines, "\n" one empty line, "" none.
std::vector<std::string_view> splitLines(std::string_view text);

// The fields of `text` separated by runs of spaces and tabs; none for blank text.
std::vector<std::string_view> splitSpaces(std::string_view text);

}  // namespace bulkhead
