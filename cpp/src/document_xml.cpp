// Normalised document -> unsigned <DTE><Documento> in XSD sequence order.
#include <libxml/tree.h>

#include "document_internal.hpp"
#include "dte/errors.hpp"
#include "dte/xml.hpp"

namespace dte {
namespace {

using detail::Kind;
using detail::Node;

const xmlChar* X(const char* s) { return reinterpret_cast<const xmlChar*>(s); }

void check_known(const json& obj, const Node& node, const std::string& path) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!node.find(it.key())) {
      throw DocumentError("input.unknown_field",
                          "unknown field '" + (path.empty() ? it.key() : path + "." + it.key()) +
                              "' (not in SII's schema for this document type)");
    }
  }
}

void emit_leaf(xmlNode* parent, xmlNs* ns, const Node& node, const json& value,
               const std::string& path) {
  if (value.is_null()) return;
  if (value.is_object() || value.is_array())
    throw DocumentError("input.type", path + " must be a single value");
  std::string text;
  if (node.kind == Kind::kInt || node.kind == Kind::kDec) {
    auto n = detail::as_number(value);
    if (!n) throw DocumentError("input.type", path + " must be a number");
    // Optional elements whose XSD type excludes zero are left out rather than made invalid.
    if (node.positive && node.min == 0 && *n == 0) return;
    const int frac = node.kind == Kind::kInt ? 0 : (node.frac > 0 ? node.frac : 4);
    text = detail::format_number(*n, frac);
  } else {
    text = detail::latin1_safe_text(detail::scalar_text(value, node), node.max_len);
    if (text.empty() && node.min == 0) return;
  }
  xmlNewTextChild(parent, ns, X(node.name), X(text.c_str()));
}

void emit_group(xmlNode* el, xmlNs* ns, const Node& node, const json& obj,
                const std::string& path) {
  if (!obj.is_object()) throw DocumentError("input.type", path + " must be an object");
  check_known(obj, node, path);
  for (const Node& c : node.children) {
    auto it = obj.find(c.name);
    if (it == obj.end()) continue;
    const std::string cpath = path.empty() ? std::string(c.name) : path + "." + c.name;
    auto emit_one = [&](const json& v, const std::string& p) {
      if (c.kind == Kind::kGroup) {
        xmlNode* sub = xmlNewChild(el, ns, X(c.name), nullptr);
        emit_group(sub, ns, c, v, p);
      } else {
        emit_leaf(el, ns, c, v, p);
      }
    };
    if (it->is_array()) {
      if (!c.repeats()) throw DocumentError("input.type", cpath + " takes a single value");
      std::size_t i = 0;
      for (const json& v : *it) {
        emit_one(v, cpath + "[" + std::to_string(i) + "]");
        ++i;
      }
    } else {
      emit_one(*it, cpath);
    }
  }
}

}  // namespace

namespace detail {
std::string latin1_safe_text(const std::string& text, int max_len) {
  std::string safe = latin1_safe(text);
  if (max_len > 0) safe = truncate_chars(safe, static_cast<std::size_t>(max_len));
  return safe;
}
}  // namespace detail

XmlDocPtr build_document_xml(const json& normalized, std::string doc_id) {
  init_xml();
  const int tipo = doc_type_of(normalized);
  if (!is_supported_type(tipo))
    throw DocumentError("input.unsupported_type",
                        "TipoDTE " + std::to_string(tipo) + " is not a supported document type");
  if (doc_id.empty()) doc_id = "T" + std::to_string(tipo) + "F" + std::to_string(folio_of(normalized));
  const Node& schema = detail::schema_for(tipo);

  XmlDocPtr doc(xmlNewDoc(X("1.0")));
  if (!doc) throw DteError("xml.internal", "cannot create an XML document");
  xmlNode* root = xmlNewDocNode(doc.get(), nullptr, X("DTE"), nullptr);
  xmlDocSetRootElement(doc.get(), root);
  xmlNs* ns = xmlNewNs(root, X(kSiiNs), nullptr);
  xmlSetNs(root, ns);
  xmlNewProp(root, X("version"), X("1.0"));
  xmlNode* documento = xmlNewChild(root, ns, X(detail::root_name(tipo)), nullptr);
  xmlNewProp(documento, X("ID"), X(doc_id.c_str()));
  emit_group(documento, ns, schema, normalized, "");
  return doc;
}

}  // namespace dte
