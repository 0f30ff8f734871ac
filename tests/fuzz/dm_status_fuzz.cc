// Fuzzes the device-mapper text parsers; the first byte picks the parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dm/device_mapper.h"
#include "dm/thin.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  const std::string_view line(reinterpret_cast<const char*>(data) + 1, size - 1);
  thinsnap::Status status;
  switch (data[0] % 4) {
    case 0:
      status = thinsnap::dm::ParseThinPoolStatus(line).status();
      break;
    case 1:
      status = thinsnap::dm::ParseThinStatus(line).status();
      break;
    case 2:
      status = thinsnap::dm::ParseThinPoolTable(line).status();
      break;
    case 3:
      status = thinsnap::dm::ParseDevNum(line).status();
      break;
  }
  // The parsers' contract: malformed text is InvalidArgument, nothing else.
  if (!status.ok() && status.code() != thinsnap::Code::kInvalidArgument) __builtin_trap();
  return 0;
}
