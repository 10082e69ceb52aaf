// Private to the MIME reader: zip attachments opened with libzip under hard limits.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dte/mime.hpp"

namespace dte::mime::detail {

struct ZipMember {
  std::string name;       // base name only: paths inside an archive mean nothing to us
  std::string index;      // "3", or "3/1" for an entry of a nested zip (for part_path)
  std::string data;       // uncompressed bytes
};

struct ZipProblem {
  std::string name;       // entry base name, "" for the archive as a whole
  std::string index;
  std::string code;       // mime.zip_corrupt, mime.zip_bomb, mime.zip_encrypted, ...
  std::string reason;
};

struct ZipContents {
  std::vector<ZipMember> members;   // every regular entry (XML or not), nested zips unpacked
  std::vector<ZipProblem> problems; // entries or archives refused, with the reason
};

// Opens `bytes` as a zip archive. Never throws for bad content: a corrupt archive, too many
// entries, a compression ratio or total size beyond the limits (zip bomb), encrypted entries and
// zips nested deeper than MimeLimits::max_zip_depth are problems with their reason. Sizes are
// enforced on the bytes actually inflated, not only on what the archive's headers declare.
ZipContents read_zip(std::string_view bytes, const MimeLimits& limits);

bool looks_like_zip(std::string_view bytes) noexcept;

}  // namespace dte::mime::detail
