// Fuzzes Filter::Parse and Filter::Matches: each input line is one filter string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "metadata/filter.h"

namespace {

std::vector<thinsnap::Info> Infos() {
  std::vector<thinsnap::Info> v(3);
  v[0].name = "a";
  v[0].kind = thinsnap::Kind::kCommitted;
  v[1].name = "b";
  v[1].parent = "a";
  v[1].kind = thinsnap::Kind::kActive;
  v[1].labels = {{"x", "1"}, {"a.b", ""}, {"containerd.io/gc.root", "2024-01-01"}};
  v[2].name = "c/\xc3\xbc";
  v[2].parent = "b";
  v[2].kind = thinsnap::Kind::kView;
  v[2].labels = {{"", "e"}, {"y z", std::string(300, 'a')}};
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Real filters are short; long inputs would only lower the exec rate.
  if (size > 512) return -1;
  static const std::vector<thinsnap::Info> infos = Infos();
  std::vector<std::string> filters(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      filters.emplace_back();
    } else {
      filters.back().push_back(static_cast<char>(data[i]));
    }
  }
  thinsnap::Result<thinsnap::Filter> f = thinsnap::Filter::Parse(filters);
  if (!f.ok()) {
    if (f.status().code() != thinsnap::Code::kInvalidArgument) __builtin_trap();
    return 0;
  }
  bool all = true;
  for (const thinsnap::Info& info : infos) all = f->Matches(info) && all;
  // MatchesAll() promises that every Info matches.
  if (f->MatchesAll() && !all) __builtin_trap();
  return 0;
}
