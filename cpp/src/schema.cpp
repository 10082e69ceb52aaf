#include "dte/schema.hpp"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>
#include <vector>

#include "dte/errors.hpp"
#include "fast_schema.hpp"

namespace dte {
namespace {

namespace fs = std::filesystem;

constexpr const char* kXsdNs = "http://www.w3.org/2001/XMLSchema";
constexpr std::size_t kMaxIssues = 500;  // a hostile document must not grow the report forever

// Root element local name -> the XSD that declares it globally.
const std::map<std::string, std::string, std::less<>>& root_schemas() {
  static const std::map<std::string, std::string, std::less<>> m = {
      {"DTE", "DTE_v10.xsd"},
      {"EnvioDTE", "EnvioDTE_v10.xsd"},
      {"EnvioBOLETA", "EnvioBOLETA_v11.xsd"},
      {"RespuestaDTE", "RespuestaEnvioDTE_v10.xsd"},
      {"EnvioRecibos", "EnvioRecibos_v10.xsd"},
      {"Recibo", "Recibos_v10.xsd"},
      {"LibroCompraVenta", "LibroCV_v10.xsd"},
      {"LibroGuia", "LibroGuia_v10.xsd"},
      {"LibroBoleta", "LibroBOLETA_v10.xsd"},
      {"ConsumoFolios", "ConsumoFolio_v10.xsd"},
      {"AEC", "AEC_v10.xsd"},
      {"Cesion", "Cesion_v10.xsd"},
      {"DTECedido", "DTECedido_v10.xsd"},
  };
  return m;
}

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\r'))
    out.pop_back();
  return out;
}

// Element path by local names, "[n]" where several siblings share the name. xmlGetNodePath is
// no use here: it writes "*" for every element of a default namespace, i.e. all of SII's.
std::string element_path(const xmlNode* node) {
  std::string attr;
  if (node && node->type == XML_ATTRIBUTE_NODE) {
    attr = std::string("/@") + reinterpret_cast<const char*>(node->name);
    node = node->parent;
  }
  std::vector<std::string> parts;
  for (const xmlNode* cur = node; cur && cur->type == XML_ELEMENT_NODE; cur = cur->parent) {
    int index = 0;
    int same = 0;
    if (cur->parent && cur->parent->type == XML_ELEMENT_NODE) {
      for (const xmlNode* sib = cur->parent->children; sib; sib = sib->next) {
        if (sib->type != XML_ELEMENT_NODE || !xmlStrEqual(sib->name, cur->name)) continue;
        ++same;
        if (sib == cur) index = same;
      }
    }
    std::string part = reinterpret_cast<const char*>(cur->name);
    if (same > 1) part += "[" + std::to_string(index) + "]";
    parts.push_back(std::move(part));
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) out += "/" + *it;
  return out + attr;
}

struct IssueSink {
  std::vector<SchemaIssue> issues;
  std::size_t dropped = 0;
  // For a synthesised envelope: copied node -> node of the caller's document.
  const std::unordered_map<const xmlNode*, const xmlNode*>* origin = nullptr;
};

void collect_issue(void* user, xmlErrorPtr err) noexcept {
  if (!user || !err) return;
  auto* sink = static_cast<IssueSink*>(user);
  try {
    if (sink->issues.size() >= kMaxIssues) {
      ++sink->dropped;
      return;
    }
    SchemaIssue issue;
    issue.line = err->line;
    issue.message = trimmed(err->message);
    const auto* node = static_cast<const xmlNode*>(err->node);
    if (node && sink->origin) {
      const xmlNode* element = node->type == XML_ATTRIBUTE_NODE ? node->parent : node;
      auto it = sink->origin->find(element);
      if (it != sink->origin->end()) {
        const xmlNode* orig = it->second;
        issue.line = static_cast<int>(xmlGetLineNo(orig));
        issue.path = element_path(orig);
        if (node->type == XML_ATTRIBUTE_NODE)
          issue.path += std::string("/@") + reinterpret_cast<const char*>(node->name);
      } else {
        issue.line = 0;  // a node of the wrapper: it has no line in the caller's bytes
        issue.path = "(synthesised envelope)" + element_path(node);
      }
    } else if (node) {
      issue.path = element_path(node);
      if (issue.line <= 0 && node->type == XML_ELEMENT_NODE)
        issue.line = static_cast<int>(xmlGetLineNo(node));
    }
    sink->issues.push_back(std::move(issue));
  } catch (...) {
    // Out of memory while reporting: the validation result still says invalid.
  }
}

void collect_compile_error(void* user, xmlErrorPtr err) noexcept {
  if (!user || !err) return;
  try {
    auto* messages = static_cast<std::string*>(user);
    if (messages->size() > 4000) return;
    if (!messages->empty()) messages->append("; ");
    if (err->file) messages->append(fs::path(err->file).filename().string() + ":");
    messages->append(std::to_string(err->line) + ": " + trimmed(err->message));
  } catch (...) {
  }
}

bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name.find('/') == std::string_view::npos &&
         name.find('\\') == std::string_view::npos && name.find(':') == std::string_view::npos &&
         name != "." && name != "..";
}

// libxml2 2.9 loads xs:include/xs:import targets with its default loader, which speaks HTTP
// and substitutes entities (XML_PARSE_NOENT). We cannot hand the schema parser our own loader
// without changing process-wide state, so before compiling we walk the include closure with
// the secure parser: every file must parse without a DTD and refer only to plain file names
// of the same folder. Then nothing the schema parser opens can be remote or carry entities.
// Returns the parsed files by name (the fast validator's compiler reads them from there).
std::map<std::string, XmlDocPtr> vet_schema_closure(const fs::path& dir, const std::string& first) {
  std::map<std::string, XmlDocPtr> docs;
  std::vector<std::string> todo{first};
  while (!todo.empty()) {
    std::string name = todo.back();
    todo.pop_back();
    if (docs.count(name)) continue;
    fs::path file = dir / name;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      throw SchemaError("schema.file_missing",
                        "XSD '" + name + "' not found in '" + dir.string() + "'");
    }
    auto size = fs::file_size(file, ec);
    if (ec || size > 8 * 1024 * 1024) {
      throw SchemaError("schema.compile", "XSD '" + name + "' is unreadable or too large");
    }
    std::string bytes(static_cast<std::size_t>(size), '\0');
    {
      std::unique_ptr<FILE, CDeleter<fclose>> f(std::fopen(file.c_str(), "rb"));
      if (!f || std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
        throw SchemaError("schema.compile", "cannot read XSD '" + file.string() + "'");
    }
    XmlDocPtr doc;
    try {
      doc = parse_xml(bytes, ParseLimits{16 * 1024 * 1024, 256});
    } catch (const XmlSyntaxError& e) {
      throw SchemaError("schema.compile", "XSD '" + name + "' refused: " + e.what());
    }
    for (const char* kind : {"include", "import", "redefine", "override"}) {
      for (xmlNode* ref : descendants(xmlDocGetRootElement(doc.get()), kind)) {
        if (!ref->ns || !xmlStrEqual(ref->ns->href, BAD_CAST kXsdNs)) continue;
        XmlCharPtr loc(xmlGetNoNsProp(ref, BAD_CAST "schemaLocation"));
        if (!loc) continue;  // an import without location loads nothing
        std::string target = reinterpret_cast<const char*>(loc.get());
        if (!is_plain_file_name(target)) {
          throw SchemaError("schema.compile", "XSD '" + name + "' refers to '" + target +
                                                  "': only files of the same folder are allowed");
        }
        todo.push_back(target);
      }
    }
    docs.emplace(std::move(name), std::move(doc));
  }
  return docs;
}

int int_text(const xmlNode* node, std::string_view path) {
  std::string s = text_at(node, path);
  int v = 0;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
    if (v > 100000) return 0;
  }
  return v;
}

bool is_bare_boleta(const xmlNode* root) {
  if (!root || !xmlStrEqual(root->name, BAD_CAST "DTE")) return false;
  int tipo = int_text(root, "Documento/Encabezado/IdDoc/TipoDTE");
  return tipo == 39 || tipo == 41;
}

void map_copies(const xmlNode* orig, const xmlNode* copy,
                std::unordered_map<const xmlNode*, const xmlNode*>& out) {
  // Iterative parallel walk of two trees of the same shape (xmlDocCopyNode keeps the order).
  std::vector<std::pair<const xmlNode*, const xmlNode*>> stack{{orig, copy}};
  while (!stack.empty()) {
    auto [o, c] = stack.back();
    stack.pop_back();
    out.emplace(c, o);
    const xmlNode* oc = o->children;
    const xmlNode* cc = c->children;
    if (o->type != XML_ELEMENT_NODE) continue;
    for (; oc && cc; oc = oc->next, cc = cc->next) stack.emplace_back(oc, cc);
  }
}

xmlNode* add_text_child(xmlNode* parent, xmlNs* ns, const char* name, const std::string& text) {
  return xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST text.c_str());
}

}  // namespace

namespace {
bool fast_by_default() {
  const char* fast = std::getenv("DTE_XSD_FAST");
  return !(fast && std::string_view(fast) == "0");
}
}  // namespace

SchemaSet::SchemaSet(std::string dir) : SchemaSet(std::move(dir), fast_by_default()) {}

SchemaSet::SchemaSet(std::string dir, bool fast_validator)
    : dir_(std::move(dir)), fast_enabled_(fast_validator) {
  std::error_code ec;
  if (dir_.empty() || !fs::is_directory(dir_, ec)) {
    throw SchemaError("schema.dir_missing",
                      "XSD folder '" + dir_ + "' does not exist (set DTE_XSD_DIR)");
  }
}

std::shared_ptr<SchemaSet> SchemaSet::shared(const std::string& dir) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<SchemaSet>> sets;
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(dir, ec);
  std::string key = ec ? dir : canonical.string();
  std::lock_guard lock(mu);
  auto it = sets.find(key);
  if (it != sets.end()) return it->second;
  auto set = std::make_shared<SchemaSet>(dir);
  sets.emplace(key, set);
  return set;
}

xmlSchema* SchemaSet::compiled(const std::string& xsd_file,
                               const detail::FastSchema** fast) const {
  // Compiles happen a handful of times per process; holding the lock through one keeps two
  // threads from compiling the same XSD twice. Validation itself runs outside the lock.
  std::lock_guard lock(mu_);
  auto it = cache_.find(xsd_file);
  if (it == cache_.end()) {
    if (!is_plain_file_name(xsd_file)) {
      throw SchemaError("schema.file_missing",
                        "'" + xsd_file + "' is not a file name of the folder");
    }
    init_xml();
    const std::map<std::string, XmlDocPtr> closure = vet_schema_closure(fs::path(dir_), xsd_file);
    const std::string path = (fs::path(dir_) / xsd_file).string();
    XmlSchemaParserCtxtPtr parser(xmlSchemaNewParserCtxt(path.c_str()));
    if (!parser) throw SchemaError("schema.compile", "cannot create a schema parser");
    std::string messages;
    xmlSchemaSetParserStructuredErrors(parser.get(), collect_compile_error, &messages);
    XmlSchemaPtr schema(xmlSchemaParse(parser.get()));
    if (!schema) {
      throw SchemaError("schema.compile",
                        "XSD '" + xsd_file + "' does not compile: " +
                            (messages.empty() ? std::string("unknown error") : messages));
    }
    Compiled c{std::move(schema), nullptr};
    if (fast_enabled_) c.fast = detail::FastSchema::compile(closure, xsd_file);
    it = cache_.emplace(xsd_file, std::move(c)).first;
  }
  if (fast) *fast = it->second.fast.get();
  return it->second.schema.get();
}

const detail::FastSchema* SchemaSet::fast_schema(const std::string& xsd_file) const {
  const detail::FastSchema* fast = nullptr;
  compiled(xsd_file, &fast);
  return fast;
}

namespace {

ValidationResult run_validation(xmlSchema* schema, const detail::FastSchema* fast, xmlDoc* doc,
                                IssueSink& sink) {
  if (fast && detail::fast_accepts(*fast, xmlDocGetRootElement(doc))) {
    ValidationResult result;
    result.valid = true;
    return result;
  }
  XmlSchemaValidCtxtPtr ctxt(xmlSchemaNewValidCtxt(schema));
  if (!ctxt) throw SchemaError("schema.compile", "cannot create a validation context");
  xmlSchemaSetValidStructuredErrors(ctxt.get(), collect_issue, &sink);
  int rc = xmlSchemaValidateDoc(ctxt.get(), doc);
  ValidationResult result;
  result.valid = rc == 0 && sink.issues.empty();
  if (rc != 0 && sink.issues.empty()) {
    SchemaIssue issue;
    issue.message = rc < 0 ? "internal validation error" : "document is not valid";
    sink.issues.push_back(std::move(issue));
  }
  if (sink.dropped) {
    SchemaIssue more;
    more.message = std::to_string(sink.dropped) + " further errors not listed";
    sink.issues.push_back(std::move(more));
  }
  result.errors = std::move(sink.issues);
  return result;
}

}  // namespace

ValidationResult SchemaSet::validate_with(xmlDoc* doc, const std::string& xsd_file) const {
  if (!doc || !xmlDocGetRootElement(doc)) throw SchemaError("schema.unknown_root", "empty document");
  xmlSchema* schema = compiled(xsd_file);
  IssueSink sink;
  ValidationResult result = run_validation(schema, fast_schema(xsd_file), doc, sink);
  result.schema = xsd_file;
  return result;
}

xmlSchema* SchemaSet::schema_for_root(std::string_view root_local, std::string* xsd_file,
                                      const detail::FastSchema** fast) const {
  auto it = root_schemas().find(root_local);
  if (it == root_schemas().end()) return nullptr;
  if (xsd_file) *xsd_file = it->second;
  return compiled(it->second, fast);
}

ValidationResult SchemaSet::validate(xmlDoc* doc) const {
  xmlNode* root = doc ? xmlDocGetRootElement(doc) : nullptr;
  if (!root) throw SchemaError("schema.unknown_root", "empty document");
  const std::string local = reinterpret_cast<const char*>(root->name);
  if (!is_bare_boleta(root)) {
    auto it = root_schemas().find(local);
    if (it == root_schemas().end()) {
      throw SchemaError("schema.unknown_root",
                        "no SII schema declares a root element '" + local + "'");
    }
    return validate_with(doc, it->second);
  }

  // EnvioBOLETA_v11.xsd declares the boleta DTE only as a child of EnvioBOLETA/SetDTE, so a
  // lone boleta is checked inside a wrapper whose every other part is valid by construction;
  // errors are then mapped back to the caller's nodes (line, path).
  const std::string xsd = "EnvioBOLETA_v11.xsd";
  xmlSchema* schema = compiled(xsd);
  XmlDocPtr wrapper(xmlNewDoc(BAD_CAST "1.0"));
  if (!wrapper) throw SchemaError("schema.compile", "out of memory");
  xmlNode* env = xmlNewDocNode(wrapper.get(), nullptr, BAD_CAST "EnvioBOLETA", nullptr);
  xmlDocSetRootElement(wrapper.get(), env);
  xmlNs* sii = xmlNewNs(env, BAD_CAST kSiiNs, nullptr);
  xmlSetNs(env, sii);
  xmlNewProp(env, BAD_CAST "version", BAD_CAST "1.0");
  xmlNode* set = xmlNewChild(env, sii, BAD_CAST "SetDTE", nullptr);
  xmlNewProp(set, BAD_CAST "ID", BAD_CAST "SynthesisedSetDTE");
  xmlNode* car = xmlNewChild(set, sii, BAD_CAST "Caratula", nullptr);
  xmlNewProp(car, BAD_CAST "version", BAD_CAST "1.0");
  add_text_child(car, sii, "RutEmisor", "60803000-K");
  add_text_child(car, sii, "RutEnvia", "60803000-K");
  add_text_child(car, sii, "RutReceptor", "60803000-K");
  add_text_child(car, sii, "FchResol", "2003-01-01");
  add_text_child(car, sii, "NroResol", "0");
  add_text_child(car, sii, "TmstFirmaEnv", "2003-01-01T00:00:00");
  xmlNode* sub = xmlNewChild(car, sii, BAD_CAST "SubTotDTE", nullptr);
  add_text_child(sub, sii, "TpoDTE", std::to_string(int_text(root, "Documento/Encabezado/IdDoc/TipoDTE")));
  add_text_child(sub, sii, "NroDTE", "1");
  xmlNode* copy = xmlDocCopyNode(root, wrapper.get(), 1);
  if (!copy) throw SchemaError("schema.compile", "out of memory");
  xmlAddChild(set, copy);
  // A placeholder signature that satisfies xmldsignature_v10.xsd; it is never verified.
  xmlNode* sig = xmlNewChild(env, nullptr, BAD_CAST "Signature", nullptr);
  xmlNs* ds = xmlNewNs(sig, BAD_CAST kDsigNs, nullptr);
  xmlSetNs(sig, ds);
  xmlNode* si = xmlNewChild(sig, ds, BAD_CAST "SignedInfo", nullptr);
  xmlNewProp(xmlNewChild(si, ds, BAD_CAST "CanonicalizationMethod", nullptr), BAD_CAST "Algorithm",
             BAD_CAST "http://www.w3.org/TR/2001/REC-xml-c14n-20010315");
  xmlNewProp(xmlNewChild(si, ds, BAD_CAST "SignatureMethod", nullptr), BAD_CAST "Algorithm",
             BAD_CAST "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
  xmlNode* ref = xmlNewChild(si, ds, BAD_CAST "Reference", nullptr);
  xmlNewProp(ref, BAD_CAST "URI", BAD_CAST "#SynthesisedSetDTE");
  xmlNewProp(xmlNewChild(ref, ds, BAD_CAST "DigestMethod", nullptr), BAD_CAST "Algorithm",
             BAD_CAST "http://www.w3.org/2000/09/xmldsig#sha1");
  add_text_child(ref, ds, "DigestValue", "AAAA");
  add_text_child(sig, ds, "SignatureValue", "AAAA");
  xmlNode* ki = xmlNewChild(sig, ds, BAD_CAST "KeyInfo", nullptr);
  xmlNode* rsa = xmlNewChild(xmlNewChild(ki, ds, BAD_CAST "KeyValue", nullptr), ds,
                             BAD_CAST "RSAKeyValue", nullptr);
  add_text_child(rsa, ds, "Modulus", "AAAA");
  add_text_child(rsa, ds, "Exponent", "AQAB");
  add_text_child(xmlNewChild(ki, ds, BAD_CAST "X509Data", nullptr), ds, "X509Certificate", "AAAA");

  std::unordered_map<const xmlNode*, const xmlNode*> origin;
  map_copies(root, copy, origin);
  IssueSink sink;
  sink.origin = &origin;
  ValidationResult result = run_validation(schema, fast_schema(xsd), wrapper.get(), sink);
  result.schema = xsd + " (synthesised envelope)";
  return result;
}

ValidationResult SchemaSet::validate_bytes(std::string_view bytes, const ParseLimits& limits) const {
  XmlDocPtr doc = parse_xml(bytes, limits);
  return validate(doc.get());
}

}  // namespace dte
