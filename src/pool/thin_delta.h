// thin_delta: reading which blocks a thin device wrote itself.
//
// thin_delta (thin-provisioning-tools) compares two thin devices' mappings in
// the pool's metadata and prints, in XML, runs of virtual blocks that are the
// same in both, mapped differently, or mapped in one only. A snapshot's own
// blocks (the only ones a discard of it can give back to the data device)
// are its `different` and `right_only` runs against its origin.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"

namespace thinsnap {

// The byte ranges of the `different` and `right_only` runs in the output of
// `thin_delta --snap1 <origin> --snap2 <id>` (begin and length in data
// blocks of `block_bytes`), in order, with touching runs merged. Both the
// compact form and --verbose's nested <range> elements are accepted.
// InvalidArgument if the text is not thin_delta's XML.
Result<std::vector<ByteRange>> ParseThinDeltaOwnRanges(std::string_view xml, uint64_t block_bytes);

}  // namespace thinsnap
