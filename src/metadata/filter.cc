#include "metadata/filter.h"

#include <re2/re2.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace thinsnap {
namespace {

constexpr int32_t kEof = -1;

struct Rune {
  int32_t cp = kEof;
  size_t len = 0;
};

// Strict UTF-8 decoding (no overlongs, surrogates or values past U+10FFFF),
// matching Go's utf8.DecodeRuneInString. len == 0 means invalid.
Rune DecodeRune(std::string_view s, size_t pos) {
  if (pos >= s.size()) return {kEof, 0};
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[pos + i]); };
  const uint8_t c0 = b(0);
  if (c0 < 0x80) return {c0, 1};
  size_t n;
  int32_t cp;
  int32_t min;
  if ((c0 & 0xE0) == 0xC0) {
    n = 2, cp = c0 & 0x1F, min = 0x80;
  } else if ((c0 & 0xF0) == 0xE0) {
    n = 3, cp = c0 & 0x0F, min = 0x800;
  } else if ((c0 & 0xF8) == 0xF0) {
    n = 4, cp = c0 & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (pos + n > s.size()) return {0, 0};
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return {0, 0};
    cp = (cp << 6) | (b(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
  return {cp, n};
}

void AppendUtf8(int32_t cp, std::string* out) {
  // Like Go's utf8.EncodeRune, surrogates and out-of-range values become U+FFFD.
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF || cp < 0) cp = 0xFFFD;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Go's unicode.IsSpace.
bool IsSpace(int32_t c) {
  switch (c) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool IsFieldRune(int32_t c) {
  return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool IsOperatorRune(int32_t c) { return c == '=' || c == '!' || c == '~'; }
bool IsQuoteRune(int32_t c) { return c == '"' || c == '/' || c == '|'; }
bool IsSeparatorRune(int32_t c) { return c == ',' || c == '.'; }

// Go's unicode.IsGraphic approximated without Unicode tables: controls,
// the common format characters and private-use code points are excluded;
// unassigned code points (which Go also excludes) are accepted.
bool IsGraphic(int32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return false;
  if (c == 0xAD || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) ||
      (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) {
    return false;
  }
  if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return false;
  return true;
}

bool IsValueRune(int32_t c) { return c != ',' && !IsSpace(c) && IsGraphic(c); }

// The character a one-letter escape such as \n stands for, or -1.
int SimpleEscape(int32_t e) {
  switch (e) {
    case 'a':
      return '\a';
    case 'b':
      return '\b';
    case 'f':
      return '\f';
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case 'v':
      return '\v';
    case '\\':
      return '\\';
    default:
      return -1;
  }
}

int HexVal(int32_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 16;
}

}  // namespace

// Recursive descent over one filter string. The input is validated as UTF-8
// without NULs up front, so the rest works on code points that always decode.
class FilterParser {
 public:
  explicit FilterParser(std::string_view input) : in_(input) {}

  Result<Filter::Conjunction> Parse() {
    for (size_t i = 0; i < in_.size();) {
      Rune r = DecodeRune(in_, i);
      if (r.len == 0) return Error(i, "invalid UTF-8");
      if (r.cp == 0) return Error(i, "unexpected NUL");
      i += r.len;
    }
    Filter::Conjunction selectors;
    for (;;) {
      Result<Filter::Selector> s = ParseSelector();
      if (!s.ok()) return s.status();
      selectors.push_back(std::move(s).value());
      // containerd looks at the very next character here, so whitespace after
      // a value or bare field path is an error rather than skipped.
      const int32_t c = Peek();
      if (c == kEof) return selectors;
      if (c != ',') return Error(pos_, "unexpected input after selector");
      ++pos_;
    }
  }

 private:
  int32_t Peek() const { return DecodeRune(in_, pos_).cp; }
  void Advance() { pos_ += DecodeRune(in_, pos_).len; }
  void SkipSpace() {
    while (IsSpace(Peek())) Advance();
  }

  Status Error(size_t at, const std::string& msg) const {
    return Status::InvalidArgument("invalid filter \"" + std::string(in_) + "\": " + msg +
                                   " at offset " + std::to_string(at));
  }

  Result<Filter::Selector> ParseSelector() {
    Filter::Selector sel;
    Result<std::vector<std::string>> path = ParseFieldPath();
    if (!path.ok()) return path.status();
    sel.fieldpath = std::move(path).value();
    const int32_t c = Peek();
    if (c == ',' || c == kEof) return sel;  // bare field path: presence test

    SkipSpace();
    const size_t op_pos = pos_;
    while (IsOperatorRune(Peek())) Advance();
    const std::string_view op = in_.substr(op_pos, pos_ - op_pos);
    if (op.empty()) return Error(op_pos, "expected an operator (\"==\" | \"!=\" | \"~=\")");
    if (op == "==") {
      sel.op = Filter::Op::kEqual;
    } else if (op == "!=") {
      sel.op = Filter::Op::kNotEqual;
    } else if (op == "~=") {
      sel.op = Filter::Op::kMatches;
    } else {
      return Error(op_pos, "unsupported operator \"" + std::string(op) + "\"");
    }

    SkipSpace();
    const size_t value_pos = pos_;
    Result<std::string> value = ParseValue(sel.op == Filter::Op::kMatches);
    if (!value.ok()) return value.status();
    sel.value = std::move(value).value();
    if (sel.op == Filter::Op::kMatches) {
      // Quiet: the error goes into the Status rather than to stderr.
      auto re = std::make_shared<const re2::RE2>(sel.value, re2::RE2::Quiet);
      if (!re->ok()) return Error(value_pos, "invalid regular expression: " + re->error());
      sel.re = std::move(re);
    }
    return sel;
  }

  Result<std::vector<std::string>> ParseFieldPath() {
    std::vector<std::string> path;
    for (;;) {
      Result<std::string> f = ParseField();
      if (!f.ok()) return f.status();
      path.push_back(std::move(f).value());
      if (Peek() != '.') return path;
      ++pos_;
    }
  }

  Result<std::string> ParseField() {
    SkipSpace();
    const int32_t c = Peek();
    if (IsQuoteRune(c)) return ParseQuoted(/*allow_alt_quotes=*/false);
    if (!IsFieldRune(c)) return Error(pos_, "expected field or quoted");
    const size_t start = pos_;
    while (IsFieldRune(Peek())) ++pos_;
    return std::string(in_.substr(start, pos_ - start));
  }

  // The caller has skipped leading whitespace.
  Result<std::string> ParseValue(bool allow_alt_quotes) {
    const int32_t c = Peek();
    if (IsQuoteRune(c)) return ParseQuoted(allow_alt_quotes);
    if (c == kEof || IsSeparatorRune(c) || IsOperatorRune(c)) {
      return Error(pos_, "expected value or quoted");
    }
    // As in containerd, the first character is taken as is; the rest must be
    // printable, non-space and not ",".
    const size_t start = pos_;
    Advance();
    while (IsValueRune(Peek())) Advance();
    return std::string(in_.substr(start, pos_ - start));
  }

  // A "..." string (or /.../ and |...| where allowed) with Go escapes.
  Result<std::string> ParseQuoted(bool allow_alt_quotes) {
    const size_t start = pos_;
    const int32_t quote = Peek();
    ++pos_;
    std::string out;
    std::optional<Status> bad;  // first bad escape; reported once the literal ends
    auto note = [&](size_t at, const std::string& msg) {
      if (!bad) bad = Error(at, msg);
    };
    for (;;) {
      const int32_t c = Peek();
      if (c == kEof || c == '\n') return Error(start, "quoted literal not terminated");
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        const size_t len = DecodeRune(in_, pos_).len;
        out.append(in_.substr(pos_, len));
        pos_ += len;
        continue;
      }
      const size_t esc = pos_;
      ++pos_;
      const int32_t e = Peek();
      if (const int simple = SimpleEscape(e); simple >= 0) {
        out.push_back(static_cast<char>(simple));
        ++pos_;
        continue;
      }
      if (e == quote) {
        out.push_back(static_cast<char>(quote));
        ++pos_;
        continue;
      }
      int base = 0;
      int digits = 0;
      if (e >= '0' && e <= '7') {
        base = 8, digits = 3;
      } else if (e == 'x') {
        base = 16, digits = 2, ++pos_;
      } else if (e == 'u') {
        base = 16, digits = 4, ++pos_;
      } else if (e == 'U') {
        base = 16, digits = 8, ++pos_;
      } else {
        note(esc, "illegal escape sequence");
        continue;  // keep scanning for the closing quote, as containerd does
      }
      int64_t v = 0;
      int i = 0;
      for (; i < digits && HexVal(Peek()) < base; ++i, ++pos_) v = v * base + HexVal(Peek());
      if (i < digits) {
        note(esc, "illegal numeric escape sequence");
        continue;
      }
      if (e == 'x' || base == 8) {
        if (v > 255) note(esc, "octal escape value > 255");
        out.push_back(static_cast<char>(v));  // a raw byte, as in Go
      } else if (v > 0x10FFFF) {
        note(esc, "escape value past U+10FFFF");
      } else {
        AppendUtf8(static_cast<int32_t>(v), &out);
      }
    }
    if (bad) return *bad;
    if (!allow_alt_quotes && quote != '"') return Error(start, "invalid quote encountered");
    return out;
  }

  std::string_view in_;
  size_t pos_ = 0;
};

Result<Filter> Filter::Parse(const std::vector<std::string>& filters) {
  Filter f;
  for (const std::string& s : filters) {
    if (s.empty()) {
      f.any_.emplace_back();  // matches everything
      continue;
    }
    Result<Conjunction> c = FilterParser(s).Parse();
    if (!c.ok()) return c.status();
    f.any_.push_back(std::move(c).value());
  }
  return f;
}

bool Filter::MatchesAll() const {
  if (any_.empty()) return true;
  for (const Conjunction& c : any_) {
    if (c.empty()) return true;
  }
  return false;
}

bool Filter::Matches(const Info& info) const {
  if (any_.empty()) return true;
  for (const Conjunction& c : any_) {
    bool all = true;
    for (const Selector& s : c) {
      if (!MatchSelector(s, info)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

bool Filter::MatchSelector(const Selector& s, const Info& info) {
  // (value, present) for the field path, as containerd's snapshot adaptor sees it.
  std::string value;
  bool present = false;
  bool is_label = false;
  const std::string& head = s.fieldpath.front();
  if (head == "name") {
    value = info.name, present = true;
  } else if (head == "parent") {
    value = info.parent, present = true;
  } else if (head == "kind") {
    present =
        info.kind == Kind::kView || info.kind == Kind::kActive || info.kind == Kind::kCommitted;
    if (present) value = KindName(info.kind);
  } else if (head == "labels") {
    is_label = true;
    std::string key;
    for (size_t i = 1; i < s.fieldpath.size(); ++i) {
      if (i > 1) key += '.';
      key += s.fieldpath[i];
    }
    auto it = info.labels.find(key);
    present = it != info.labels.end();
    if (present) value = it->second;
  }

  switch (s.op) {
    case Op::kPresent:
      return present && (is_label || !value.empty());
    case Op::kEqual:
      return present && value == s.value;
    case Op::kNotEqual:
      return value != s.value;
    case Op::kMatches:
      return re2::RE2::PartialMatch(value, *s.re);
  }
  return false;
}

}  // namespace thinsnap
