#include "common/text.h"

#include <cstdint>
#include <cstdio>

namespace bulkhead {
namespace {

// One decoded character: its code point and byte length, or `valid` false for a byte that
// does not start a well-formed UTF-8 sequence (overlong forms and surrogates included).
struct Decoded {
  char32_t code = 0;
  size_t length = 1;
  bool valid = false;
};

Decoded decodeAt(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return {b0, 1, true};
  size_t n = 0;
  char32_t code = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, code = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, code = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, code = b0 & 0x07, min = 0x10000;
  } else {
    return {};
  }
  if (i + n > s.size()) return {};
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {};
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return {};
  return {code, n, true};
}

bool printable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c >= 0x80 && c <= 0x9F) return false;
  if (c == 0x2028 || c == 0x2029) return false;
  if (c >= 0x202A && c <= 0x202E) return false;
  if (c >= 0x2066 && c <= 0x2069) return false;
  return true;
}

std::string escaped(std::string_view s, size_t i, const Decoded& d) {
  char buf[16];
  if (!d.valid) {
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i]));
    return buf;
  }
  switch (d.code) {
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: break;
  }
  if (d.code < 0x80) {
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(d.code));
  } else {
    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(d.code));
  }
  return buf;
}

}  // namespace

std::optional<NonPrintable> findNonPrintable(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    Decoded d = decodeAt(text, i);
    if (!d.valid || !printable(d.code)) return NonPrintable{i, escaped(text, i, d)};
    i += d.length;
  }
  return std::nullopt;
}

std::string escapeNonPrintable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    Decoded d = decodeAt(text, i);
    if (d.valid && printable(d.code)) {
      out.append(text.substr(i, d.length));
    } else {
      out += escaped(text, i, d);
    }
    i += d.valid ? d.length : 1;
  }
  return out;
}

}  // namespace bulkhead
