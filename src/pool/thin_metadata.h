// Reading which virtual blocks a thin device maps, straight from the pool's
// metadata, in-process.
//
// A layer's Commit trims the free blocks of its filesystem. Almost all of
// them are not mapped by its thin device (never written, or already
// unmapped by its parent's own trim), and a BLKDISCARD of an unmapped range
// still costs a round trip through the pool's worker. Knowing the device's
// mappings lets the trim discard only the free ranges that hold some, so
// its cost follows what the layer freed. thin_dump would tell the same, but
// a Commit must not fork; the device's mapping tree is a few metadata blocks.
//
// The format is dm-thin's (drivers/md/dm-thin-metadata.c and
// persistent-data/dm-btree*.c): 4 KiB little-endian blocks; the superblock
// in block 0 names the root of a two-level btree, thin id -> (virtual block
// -> data block << 24 | time). Only what the walk needs is checked: magic,
// every node's own block number, node kind, entry counts and value size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"
#include "pool/pool.h"

namespace thinsnap {

enum class MetadataSource {
  // The metadata device of a live pool, read through the metadata snapshot
  // it holds (reserve_metadata_snap): the live trees change under a reader.
  // Read with O_DIRECT, since the kernel writes the device around the page
  // cache.
  kHeldSnapshot,
  // A metadata file nothing writes to, e.g. thin_restore's output.
  kOfflineFile,
};

// The byte ranges of the virtual blocks (of `block_bytes`) that thin device
// `id` maps, in order, touching ranges merged. NotFound if the device is not
// in the metadata; FailedPrecondition if kHeldSnapshot and none is held;
// Internal if the metadata is not what the format says.
Result<std::vector<ByteRange>> ReadThinMappings(const std::string& metadata_path,
                                                MetadataSource source, ThinId id,
                                                uint64_t block_bytes);

// The parts of `ranges` that lie within `within`; both sorted by offset and
// free of overlaps, as is the result.
std::vector<ByteRange> IntersectRanges(const std::vector<ByteRange>& ranges,
                                       const std::vector<ByteRange>& within);

}  // namespace thinsnap
