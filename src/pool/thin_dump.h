// Reading which blocks a thin device wrote itself, from thin_dump's XML.
//
// dm-thin stamps every mapping with the pool's "time", a counter that each
// create_snap advances, and a device records the time it was created at. A
// snapshot's inherited mappings were all made before it existed, so they
// carry an earlier time; every block it wrote itself (and every block of a
// device made with create_thin) carries its creation time or a later one.
// Those are the only blocks a discard of the device can give back to the
// data device, whatever else still shares the rest.
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"
#include "pool/pool.h"

namespace thinsnap {

// For every <device> in the output of `thin_dump` (thin-provisioning-tools'
// XML format, begin and length in data blocks of `block_bytes`), the byte
// ranges of its mappings stamped at or after its creation_time, in order,
// with touching ranges merged. A device that wrote nothing maps to an empty
// list. InvalidArgument if the text is not thin_dump's XML.
Result<std::map<ThinId, std::vector<ByteRange>>> ParseThinDumpOwnRanges(std::string_view xml,
                                                                        uint64_t block_bytes);

}  // namespace thinsnap
