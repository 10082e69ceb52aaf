// Zip attachments: libzip reads the archive from memory (no temporary files, no paths from the
// archive ever touch the file system), every limit is checked on the bytes really inflated, and
// anything suspicious refuses the archive with a reason instead of throwing.
#include "mime_zip.hpp"

#include <zip.h>

#include <algorithm>
#include <memory>

#include "dte/handles.hpp"

namespace dte::mime::detail {
namespace {

using ZipArchivePtr = std::unique_ptr<zip_t, CDeleter<zip_discard>>;
inline void zip_file_close(zip_file_t* f) noexcept { zip_fclose(f); }
using ZipFilePtr = std::unique_ptr<zip_file_t, CDeleter<zip_file_close>>;
using ZipSourcePtr = std::unique_ptr<zip_source_t, CDeleter<zip_source_free>>;

struct ZipErrorGuard {
  zip_error_t error;
  ZipErrorGuard() { zip_error_init(&error); }
  ~ZipErrorGuard() { zip_error_fini(&error); }
  ZipErrorGuard(const ZipErrorGuard&) = delete;
  ZipErrorGuard& operator=(const ZipErrorGuard&) = delete;
};

// Display name: the last path component, control characters dropped.
std::string base_name(const char* raw) {
  std::string name = raw ? raw : "";
  auto slash = name.find_last_of("/\\");
  if (slash != std::string::npos) name = name.substr(slash + 1);
  name.erase(std::remove_if(name.begin(), name.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }),
             name.end());
  return name.substr(0, 255);
}

std::string mib(std::size_t bytes) {
  return std::to_string(bytes / (1024 * 1024)) + " MiB";
}

// Budget shared by an archive and the zips nested in it.
struct Budget {
  std::size_t entries = 0;
  std::size_t inflated = 0;
};

class Reader {
 public:
  Reader(const MimeLimits& limits, ZipContents& out) : limits_(limits), out_(out) {}

  // false: the archive as a whole was refused (its problem is recorded, its members dropped).
  bool read(std::string_view bytes, const std::string& prefix, int depth) {
    ZipErrorGuard err;
    ZipSourcePtr src(zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err.error));
    if (!src) return archive_problem(prefix, "mime.zip_corrupt", "the zip could not be read");
    ZipArchivePtr za(zip_open_from_source(src.get(), ZIP_RDONLY | ZIP_CHECKCONS, &err.error));
    if (!za)
      return archive_problem(prefix, "mime.zip_corrupt",
                             std::string("not a readable zip archive: ") + zip_error_strerror(&err.error));
    src.release();  // the archive owns the source now

    zip_int64_t n = zip_get_num_entries(za.get(), 0);
    if (n < 0) return archive_problem(prefix, "mime.zip_corrupt", "the zip's directory is unreadable");
    budget_.entries += static_cast<std::size_t>(n);
    if (budget_.entries > limits_.max_zip_entries)
      return archive_problem(prefix, "mime.zip_too_many_entries",
                             "the zip holds more than " + std::to_string(limits_.max_zip_entries) +
                                 " entries (zip bomb?); refused unread");

    // The declared sizes first: a bomb is refused before anything is inflated.
    std::size_t declared = 0;
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(za.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0)
        return archive_problem(prefix, "mime.zip_corrupt", "entry " + std::to_string(i + 1) + " is unreadable");
      if (st.valid & ZIP_STAT_SIZE) declared += static_cast<std::size_t>(st.size);
    }
    if (declared > limits_.max_zip_total_bytes || budget_.inflated + declared > limits_.max_zip_total_bytes)
      return archive_problem(prefix, "mime.zip_bomb",
                             "the zip declares " + std::to_string(declared) + " bytes once inflated, beyond the limit of " +
                                 mib(limits_.max_zip_total_bytes) + " (zip bomb?)");

    const std::size_t first_member = out_.members.size();
    for (zip_int64_t i = 0; i < n; ++i) {
      auto idx = static_cast<zip_uint64_t>(i);
      zip_stat_t st;
      zip_stat_init(&st);
      zip_stat_index(za.get(), idx, 0, &st);
      std::string name = base_name(zip_get_name(za.get(), idx, ZIP_FL_ENC_GUESS));
      std::string index = prefix.empty() ? std::to_string(i + 1) : prefix + "/" + std::to_string(i + 1);
      if (name.empty()) continue;  // a directory ("dir/") or a nameless entry: nothing to read
      if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
        problem(name, index, "mime.zip_encrypted",
                "the entry is encrypted (password-protected zip); ask the sender for the XML without a password");
        continue;
      }
      std::string data;
      int verdict = inflate(za.get(), idx, st, name, index, data);
      if (verdict < 0) {  // archive-level refusal: drop what this archive gave so far
        out_.members.resize(first_member);
        return false;
      }
      if (verdict == 0) continue;
      if (looks_like_zip(data)) {
        if (depth + 1 > limits_.max_zip_depth) {
          problem(name, index, "mime.zip_nested",
                  "a zip nested more than " + std::to_string(limits_.max_zip_depth) + " level(s) deep; not opened");
          continue;
        }
        if (!read(data, index, depth + 1) && budget_exhausted_) {
          out_.members.resize(first_member);
          return false;
        }
        continue;
      }
      out_.members.push_back(ZipMember{name, index, std::move(data)});
    }
    return true;
  }

 private:
  // 1: read; 0: entry refused (problem recorded); -1: archive refused.
  int inflate(zip_t* za, zip_uint64_t idx, const zip_stat_t& st, const std::string& name,
              const std::string& index, std::string& data) {
    ZipFilePtr f(zip_fopen_index(za, idx, 0));
    if (!f) {
      problem(name, index, "mime.zip_corrupt",
              std::string("the entry cannot be opened: ") + zip_strerror(za));
      return 0;
    }
    const std::size_t compressed =
        (st.valid & ZIP_STAT_COMP_SIZE) ? static_cast<std::size_t>(st.comp_size) : 0;
    char buf[65536];
    for (;;) {
      zip_int64_t got = zip_fread(f.get(), buf, sizeof buf);
      if (got < 0) {
        problem(name, index, "mime.zip_corrupt",
                std::string("the entry is corrupt: ") + zip_file_strerror(f.get()));
        return 0;
      }
      if (got == 0) break;
      data.append(buf, static_cast<std::size_t>(got));
      budget_.inflated += static_cast<std::size_t>(got);
      if (budget_.inflated > limits_.max_zip_total_bytes) {
        budget_exhausted_ = true;
        archive_problem("", "mime.zip_bomb",
                        "the zip inflates beyond " + mib(limits_.max_zip_total_bytes) + " (zip bomb?); refused");
        return -1;
      }
      if (data.size() > limits_.zip_ratio_floor_bytes &&
          static_cast<double>(data.size()) > limits_.max_zip_ratio * static_cast<double>(std::max<std::size_t>(compressed, 1))) {
        budget_exhausted_ = true;
        archive_problem("", "mime.zip_bomb",
                        "entry '" + name + "' inflates more than " +
                            std::to_string(static_cast<long long>(limits_.max_zip_ratio)) +
                            " times its compressed size (zip bomb?); refused");
        return -1;
      }
      if (data.size() > limits_.max_attachment_bytes) {
        problem(name, index, "mime.oversized",
                "the entry inflates beyond the attachment limit of " + std::to_string(limits_.max_attachment_bytes) +
                    " bytes");
        return 0;
      }
    }
    return 1;
  }

  bool archive_problem(const std::string& index, const char* code, std::string reason) {
    problem("", index, code, std::move(reason));
    return false;
  }

  void problem(const std::string& name, const std::string& index, const char* code, std::string reason) {
    out_.problems.push_back(ZipProblem{name, index, code, std::move(reason)});
  }

  const MimeLimits& limits_;
  ZipContents& out_;
  Budget budget_;
  bool budget_exhausted_ = false;
};

}  // namespace

bool looks_like_zip(std::string_view bytes) noexcept {
  return bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K' &&
         ((bytes[2] == '\x03' && bytes[3] == '\x04') || (bytes[2] == '\x05' && bytes[3] == '\x06') ||
          (bytes[2] == '\x07' && bytes[3] == '\x08'));
}

ZipContents read_zip(std::string_view bytes, const MimeLimits& limits) {
  ZipContents out;
  Reader reader(limits, out);
  if (!reader.read(bytes, "", 0)) out.members.clear();
  return out;
}

}  // namespace dte::mime::detail
