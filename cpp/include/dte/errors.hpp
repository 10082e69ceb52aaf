// Exceptions of the DTE core, named by cause. Expected outcomes (a schema-invalid document,
// a signature that does not verify, a rule the document breaks) are values, not exceptions:
// see ValidationResult, VerifyReport and Finding.
#pragma once
#include <stdexcept>
#include <string>

namespace dte {

// Base of every error the core throws on purpose. `code()` is a short stable identifier
// (e.g. "caf.wrong_rut") that the bindings, the CLI's --json and tests can rely on.
class DteError : public std::runtime_error {
 public:
  DteError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

// Input that is not well-formed XML, or that breaks the secure-parsing limits
// (DTD, entities, depth, size).
class XmlSyntaxError : public DteError {
 public:
  using DteError::DteError;
};

// A RUT that cannot be parsed or whose check digit is wrong.
class RutError : public DteError {
 public:
  using DteError::DteError;
};

// PKCS#12 / PEM loading and certificate problems (wrong password, expired, no RUT...).
class CertificateError : public DteError {
 public:
  using DteError::DteError;
};

// CAF problems: unparsable, SII signature bad, key pair mismatch, wrong RUT/type, folio range, expiry.
class CafError : public DteError {
 public:
  using DteError::DteError;
};

// Creating a signature failed (xmlsec or OpenSSL refused).
class SignatureError : public DteError {
 public:
  using DteError::DteError;
};

// A document input (JSON) that cannot be turned into a DTE: unknown type, wrong field types,
// or rule-engine findings of severity error (the message lists them).
class DocumentError : public DteError {
 public:
  using DteError::DteError;
};

// Schema loading problems (missing directory, XSD that does not compile). A document that is
// merely invalid is a ValidationResult, not this.
class SchemaError : public DteError {
 public:
  using DteError::DteError;
};

}  // namespace dte
