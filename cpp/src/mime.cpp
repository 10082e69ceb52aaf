#include "dte/mime.hpp"

#include <gmime/gmime.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include "mime_zip.hpp"

namespace dte::mime {
namespace {

void init_gmime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

struct GObjectUnref {
  void operator()(gpointer p) const noexcept {
    if (p) g_object_unref(p);
  }
};
template <typename T>
using GPtr = std::unique_ptr<T, GObjectUnref>;

struct GFree {
  void operator()(gpointer p) const noexcept { g_free(p); }
};
using GString_ = std::unique_ptr<char, GFree>;

struct FormatOptionsFree {
  void operator()(GMimeFormatOptions* p) const noexcept {
    if (p) g_mime_format_options_free(p);
  }
};

struct DateTimeUnref {
  void operator()(GDateTime* p) const noexcept {
    if (p) g_date_time_unref(p);
  }
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string first_address(InternetAddressList* list) {
  if (!list) return {};
  int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* a = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
      const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
      if (addr && *addr) return addr;
    }
  }
  return {};
}

std::string iso_date(GMimeMessage* msg) {
  GDateTime* dt = g_mime_message_get_date(msg);  // owned by the message
  if (!dt) return {};
  std::unique_ptr<GDateTime, DateTimeUnref> utc(g_date_time_to_utc(dt));
  if (!utc) return {};
  GString_ text(g_date_time_format(utc.get(), "%Y-%m-%dT%H:%M:%SZ"));
  return text ? std::string(text.get()) : std::string();
}

// Reads a stream to the end, at most `limit` bytes; false when there was more.
bool read_bounded(GMimeStream* stream, std::size_t limit, std::string& out) {
  char buf[65536];
  for (;;) {
    ssize_t n = g_mime_stream_read(stream, buf, sizeof buf);
    if (n < 0) return false;
    if (n == 0) return true;
    if (out.size() + static_cast<std::size_t>(n) > limit) return false;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

struct Walker {
  const MimeLimits& limits;
  Message& out;

  void refuse(const std::string& filename, const std::string& type, const std::string& path,
              const char* code, std::string reason) {
    out.refused.push_back(RefusedPart{filename, type, path, code, std::move(reason)});
  }

  void walk(GMimeObject* obj, const std::string& path, int depth) {
    if (!obj) return;
    if (depth > limits.max_depth) {
      refuse("", "", path, "mime.too_deep",
             "MIME nesting deeper than " + std::to_string(limits.max_depth) + " levels");
      return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      if (inner) walk(g_mime_message_get_mime_part(inner), path, depth + 1);
      return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      int n = g_mime_multipart_get_count(mp);
      for (int i = 0; i < n; ++i) {
        std::string child = path.empty() ? std::to_string(i + 1) : path + "." + std::to_string(i + 1);
        walk(g_mime_multipart_get_part(mp, i), child, depth + 1);
      }
      return;
    }
    if (GMIME_IS_PART(obj)) leaf(GMIME_PART(obj), path.empty() ? "1" : path);
  }

  void leaf(GMimePart* part, const std::string& path) {
    if (++out.part_count > limits.max_parts) {
      if (out.part_count == limits.max_parts + 1)
        refuse("", "", path, "mime.too_many_parts",
               "more than " + std::to_string(limits.max_parts) + " parts; the rest were not read");
      return;
    }
    GMimeContentType* ct = g_mime_object_get_content_type(GMIME_OBJECT(part));
    std::string type;
    std::string charset;
    if (ct) {
      GString_ t(g_mime_content_type_get_mime_type(ct));
      if (t) type = lower(t.get());
      const char* cs = g_mime_content_type_get_parameter(ct, "charset");
      if (cs) charset = cs;
    }
    const char* fn = g_mime_part_get_filename(part);
    std::string filename = fn ? fn : "";
    const std::string lname = lower(filename);
    const bool is_body = filename.empty() && (type == "text/plain" || type == "text/html");
    if (is_body) return;

    const bool zip = ends_with(lname, ".zip") || type == "application/zip" ||
                     type == "application/x-zip-compressed";
    const bool gz = ends_with(lname, ".gz") || type == "application/gzip" ||
                    type == "application/x-gzip";
    const bool named_xml = ends_with(lname, ".xml") || ends_with(lname, ".xml.gz") ||
                           type == "application/xml" || type == "text/xml" ||
                           ends_with(type, "+xml");

    GMimeDataWrapper* wrapper = g_mime_part_get_content(part);
    std::string data;
    if (wrapper) {
      // Encoded size bounds the decoded size (base64 shrinks, QP never grows): refuse before
      // decoding anything huge.
      GMimeStream* encoded = g_mime_data_wrapper_get_stream(wrapper);
      gint64 encoded_len = encoded ? g_mime_stream_length(encoded) : -1;
      std::size_t bound = limits.max_attachment_bytes;
      if (encoded_len > 0 && static_cast<std::size_t>(encoded_len) > bound * 4 / 3 + 4096) {
        refuse(filename, type, path, "mime.oversized",
               "attachment of " + std::to_string(encoded_len) + " encoded bytes exceeds the limit of " +
                   std::to_string(bound) + " bytes");
        return;
      }
      GPtr<GMimeStream> mem(g_mime_stream_mem_new());
      if (g_mime_data_wrapper_write_to_stream(wrapper, mem.get()) < 0) {
        refuse(filename, type, path, "mime.undecodable", "the part's content could not be decoded");
        return;
      }
      GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
      if (bytes && bytes->len) data.assign(reinterpret_cast<const char*>(bytes->data), bytes->len);
    }
    if (data.size() > limits.max_attachment_bytes) {
      refuse(filename, type, path, "mime.oversized",
             "attachment of " + std::to_string(data.size()) + " bytes exceeds the limit of " +
                 std::to_string(limits.max_attachment_bytes) + " bytes");
      return;
    }
    if (zip || detail::looks_like_zip(data)) {
      unzip(filename, type, path, data);
      return;
    }
    if (gz || (data.size() >= 2 && data[0] == '\x1f' && data[1] == '\x8b')) {
      std::string unpacked;
      if (!gunzip(data, unpacked)) {
        refuse(filename, type, path, "mime.oversized",
               "gzip attachment expands beyond the limit of " +
                   std::to_string(limits.max_attachment_bytes) + " bytes or is corrupt");
        return;
      }
      data.swap(unpacked);
      if (!looks_like_xml(data)) {
        if (named_xml) refuse(filename, type, path, "mime.not_xml", "the gzip attachment holds no XML");
        return;
      }
    }
    if (!looks_like_xml(data)) {
      if (named_xml)
        refuse(filename, type, path, "mime.not_xml",
               "the attachment is named or typed as XML but its content is not XML");
      return;  // a PDF, an image...: not ours to read
    }
    out.xml.push_back(XmlAttachment{filename, type, charset, path, std::move(data)});
  }

  // Every XML entry of a zip becomes an attachment of its own ("1.2/zip:3"); refusals name the
  // archive and the entry. Entries that are neither XML nor named so (a PDF) are not ours to read.
  void unzip(const std::string& filename, const std::string& type, const std::string& path,
             const std::string& data) {
    detail::ZipContents zc = detail::read_zip(data, limits);
    const std::string archive = filename.empty() ? std::string("zip attachment") : filename;
    for (auto& p : zc.problems) {
      std::string where = p.index.empty() ? path : path + "/zip:" + p.index;
      std::string what = p.name.empty() ? archive : archive + ": " + p.name;
      refuse(what, type, where, p.code.c_str(), std::move(p.reason));
    }
    for (auto& m : zc.members) {
      std::string where = path + "/zip:" + m.index;
      const std::string lname = lower(m.name);
      if (!looks_like_xml(m.data)) {
        if (ends_with(lname, ".xml"))
          refuse(archive + ": " + m.name, "application/xml", where, "mime.not_xml",
                 "the zip entry is named as XML but its content is not XML");
        continue;
      }
      out.xml.push_back(XmlAttachment{m.name, "application/xml", "", where, std::move(m.data)});
    }
  }

  bool gunzip(const std::string& in, std::string& out_bytes) const {
    GPtr<GMimeStream> src(g_mime_stream_mem_new_with_buffer(in.data(), in.size()));
    GPtr<GMimeStream> filtered(g_mime_stream_filter_new(src.get()));
    GPtr<GMimeFilter> filter(g_mime_filter_gzip_new(GMIME_FILTER_GZIP_MODE_UNZIP, 0));
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered.get()), filter.get());
    return read_bounded(filtered.get(), limits.max_attachment_bytes, out_bytes);
  }
};

}  // namespace

bool looks_like_xml(std::string_view b) {
  if (b.substr(0, 3) == "\xEF\xBB\xBF") b.remove_prefix(3);
  while (!b.empty() && (b.front() == ' ' || b.front() == '\t' || b.front() == '\r' || b.front() == '\n'))
    b.remove_prefix(1);
  if (b.size() < 2 || b[0] != '<') return false;
  unsigned char c = static_cast<unsigned char>(b[1]);
  return c == '?' || c == '!' || std::isalpha(c) || c == '_';
}

Message parse_message(std::string_view raw, const MimeLimits& limits) {
  Message out;
  if (raw.size() > limits.max_message_bytes) {
    out.error_code = "mime.too_large";
    out.error = "message of " + std::to_string(raw.size()) + " bytes exceeds the limit of " +
                std::to_string(limits.max_message_bytes) + " bytes";
    return out;
  }
  if (raw.empty()) {
    out.error_code = "mime.unparsable";
    out.error = "empty message";
    return out;
  }
  init_gmime();
  GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
  GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  GPtr<GMimeMessage> msg(g_mime_parser_construct_message(parser.get(), nullptr));
  if (!msg) {
    out.error_code = "mime.unparsable";
    out.error = "not an Internet message (no header block GMime could read)";
    return out;
  }
  GMimeObject* body = g_mime_message_get_mime_part(msg.get());
  const char* mid = g_mime_message_get_message_id(msg.get());
  if (mid) out.message_id = mid;
  out.from = first_address(g_mime_message_get_from(msg.get()));
  out.reply_to = first_address(g_mime_message_get_reply_to(msg.get()));
  const char* subject = g_mime_message_get_subject(msg.get());
  if (subject) out.subject = subject;
  out.date = iso_date(msg.get());
  if (!body) {
    out.error_code = "mime.unparsable";
    out.error = "the message has no body";
    return out;
  }
  Walker walker{limits, out};
  walker.walk(body, "", 0);
  out.ok = true;
  return out;
}

std::string build_message(std::string_view from, std::string_view to, std::string_view subject,
                          std::string_view text_body,
                          const std::vector<OutgoingAttachment>& attachments) {
  init_gmime();
  GPtr<GMimeMessage> msg(g_mime_message_new(TRUE));
  g_mime_message_add_mailbox(msg.get(), GMIME_ADDRESS_TYPE_FROM, nullptr, std::string(from).c_str());
  g_mime_message_add_mailbox(msg.get(), GMIME_ADDRESS_TYPE_TO, nullptr, std::string(to).c_str());
  g_mime_message_set_subject(msg.get(), std::string(subject).c_str(), "utf-8");
  std::unique_ptr<GDateTime, DateTimeUnref> now(g_date_time_new_now_utc());
  g_mime_message_set_date(msg.get(), now.get());
  std::string domain(from.substr(from.find('@') == std::string_view::npos ? 0 : from.find('@') + 1));
  GString_ id(g_mime_utils_generate_message_id(domain.empty() ? "localhost" : domain.c_str()));
  g_mime_message_set_message_id(msg.get(), id.get());

  GPtr<GMimeMultipart> mixed(g_mime_multipart_new_with_subtype("mixed"));
  GPtr<GMimeTextPart> text(g_mime_text_part_new_with_subtype("plain"));
  g_mime_text_part_set_text(text.get(), std::string(text_body).c_str());
  g_mime_multipart_add(mixed.get(), GMIME_OBJECT(text.get()));
  for (const auto& a : attachments) {
    std::string ctype = a.content_type.empty() ? "application/xml" : a.content_type;
    auto slash = ctype.find('/');
    std::string major = slash == std::string::npos ? "application" : ctype.substr(0, slash);
    std::string minor = slash == std::string::npos ? ctype : ctype.substr(slash + 1);
    GPtr<GMimePart> part(g_mime_part_new_with_type(major.c_str(), minor.c_str()));
    g_mime_part_set_filename(part.get(), a.filename.c_str());
    GPtr<GMimeStream> content(g_mime_stream_mem_new_with_buffer(a.data.data(), a.data.size()));
    GPtr<GMimeDataWrapper> wrapper(
        g_mime_data_wrapper_new_with_stream(content.get(), GMIME_CONTENT_ENCODING_DEFAULT));
    g_mime_part_set_content(part.get(), wrapper.get());
    g_mime_part_set_content_encoding(part.get(), GMIME_CONTENT_ENCODING_BASE64);
    g_mime_multipart_add(mixed.get(), GMIME_OBJECT(part.get()));
  }
  g_mime_message_set_mime_part(msg.get(), GMIME_OBJECT(mixed.get()));
  // RFC 5322 lines end in CRLF; SMTP servers read bare LF as one endless line.
  std::unique_ptr<GMimeFormatOptions, FormatOptionsFree> format(g_mime_format_options_new());
  g_mime_format_options_set_newline_format(format.get(), GMIME_NEWLINE_FORMAT_DOS);
  GString_ text_out(g_mime_object_to_string(GMIME_OBJECT(msg.get()), format.get()));
  return text_out ? std::string(text_out.get()) : std::string();
}

}  // namespace dte::mime
