// Filter: containerd's filter language, applied to snapshot Info in List/Walk.
//
// Grammar (containerd's filters package; whitespace may precede a field, an
// operator or a value, but not follow a value or a bare field path):
//   selectors := selector ("," selector)*
//   selector  := fieldpath [operator value]
//   fieldpath := field ("." field)*
//   field     := [A-Za-z0-9_]+ | "double-quoted"
//   operator  := "==" | "!=" | "~="
//   value     := "double-quoted" | unquoted run of printable non-space, non-"," characters
//                (with ~= also /regex/ or |regex|)
// Quoted strings take Go escapes (\n \t \xHH \uHHHH \ooo \\ and the quote itself).
//
// Separate filter strings are OR'ed; the selectors within one are AND'ed. An
// empty list, or an empty string in it, matches everything.
//
// Fields: "name", "parent", "kind" ("view" | "active" | "committed") and
// "labels.<key>", where the key is every component after "labels" joined by
// "." (so labels.a.b and labels."a.b" name the same key). As in containerd,
// other field names are accepted and never present, and extra components
// after name/parent/kind are ignored.
//
// Matching, per selector:
//   field             present: a non-empty name/parent/kind, or an existing label
//   field==v          present and equal (name and parent always count as present,
//                     so parent=="" selects root snapshots)
//   field!=v          the value, "" when absent, differs from v
//   field~=re         re is found anywhere in the value, "" when absent
// Regular expressions use RE2, whose syntax is Go's regexp syntax, as in
// containerd, and whose matching time is linear: a client-supplied pattern
// cannot stall the daemon with catastrophic backtracking (std::regex can).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "metadata/snapshot_types.h"

namespace re2 {
class RE2;
}

namespace thinsnap {

class Filter {
 public:
  // InvalidArgument, with the byte offset of the problem, on malformed input or
  // a regular expression RE2 rejects.
  static Result<Filter> Parse(const std::vector<std::string>& filters);

  bool Matches(const Info& info) const;
  // True when Matches() accepts every Info, so callers can skip filtering.
  bool MatchesAll() const;

 private:
  enum class Op { kPresent, kEqual, kNotEqual, kMatches };
  struct Selector {
    std::vector<std::string> fieldpath;
    Op op = Op::kPresent;
    std::string value;
    std::shared_ptr<const re2::RE2> re;  // set for kMatches only
  };
  using Conjunction = std::vector<Selector>;  // empty = matches everything

  friend class FilterParser;
  static bool MatchSelector(const Selector& s, const Info& info);

  std::vector<Conjunction> any_;  // empty = no filters = matches everything
};

}  // namespace thinsnap
