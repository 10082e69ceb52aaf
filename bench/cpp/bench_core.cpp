// Throughput of the C++ core without Python: build+TED+sign through dte::sign_many on 1 and 2
// threads, and full verification (signature, key match, certificate validity, TED, CAF) of the
// signed DTEs through dte::verify_document, with and without the XSDs.
//
//   cmake -S . -B build/bench -G Ninja -DDTE_BUILD_BENCH=ON -DDTE_BUILD_PYTHON=OFF
//         -DDTE_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG"
//   cmake --build build/bench --target dte_bench
//   build/bench/dte_bench [--n N] [--mode all|sign1|sign2|paired|verify|verify-schema|rss]
//                         [--threads T] [--input file.json] [--corpus file]
//   build/bench/dte_bench --mode files FILE...   (every check of each file, for diffing builds)
//
// Material (an "SII" key, a CAF, a signer certificate) is made on the spot with dte::testkit.
// Besides wall-clock docs/s it prints docs per CPU-second (steadier on a shared machine) and, for
// signing, the share of the floor: one RSA-2048 plus one RSA-512 signature per document, timed
// in the same process. `--corpus` keeps the signed DTEs of a verify run in a file so that a
// profile (perf record) of a second run shows verification only. `rss` signs --n documents in
// batches of 1000 on 2 threads (verifying every tenth) and prints the resident set as it goes.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "dte/caf.hpp"
#include "dte/cert.hpp"
#include "dte/pipeline.hpp"
#include "dte/schema.hpp"
#include "dte/testkit.hpp"
#include "dte/verify.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kIssuer = "76543210-3";

// Local now as "YYYY-MM-DDTHH:MM:SS": the signer certificate is made valid around now.
std::string local_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// CPU seconds of the whole process: on a machine shared with other work, docs per CPU-second
// is the steadier figure (wall time also counts time the scheduler gave to others).
double process_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The floor: one RSA-2048 signature (XMLDSig) plus one RSA-512 signature (TED) per document,
// timed here, in this process and under the same machine load, as CPU seconds per document. Timed
// the way `openssl speed` times it (a context made once, EVP_PKEY_sign of 36 bytes per call), so
// that what it leaves out of the floor (context set-up, hashing) counts against us, not for us.
double floor_cpu_per_doc(EVP_PKEY* rsa2048, std::size_t rounds) {
  static EVP_PKEY* const rsa512 = [] {  // a CAF-like key (e = 3), made once
    const dte::testkit::KeyPair small = dte::testkit::make_rsa_key(512, 3);
    BIO* bio = BIO_new_mem_buf(small.private_pem.data(), static_cast<int>(small.private_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    return key;
  }();
  struct Ctx {
    EVP_PKEY_CTX* ctx;
    explicit Ctx(EVP_PKEY* key) : ctx(EVP_PKEY_CTX_new(key, nullptr)) { EVP_PKEY_sign_init(ctx); }
    ~Ctx() { EVP_PKEY_CTX_free(ctx); }
    void sign() const {
      static const unsigned char tbs[36] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
      unsigned char sig[512];
      std::size_t len = sizeof sig;
      EVP_PKEY_sign(ctx, sig, &len, tbs, sizeof tbs);
    }
  };
  const Ctx big(rsa2048), small(rsa512);
  big.sign();
  small.sign();
  double c0 = process_cpu();
  for (std::size_t i = 0; i < rounds; ++i) {
    big.sign();
    small.sign();
  }
  return (process_cpu() - c0) / static_cast<double>(rounds);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 2000;
  unsigned paired_threads = 1;  // --mode paired: sign_many's threads against the one-core floor
  std::string mode = "all";
  std::vector<std::string> files;  // --mode files: the files to verify
  fs::path corpus;  // verify modes: signed DTEs cached here so a profile shows verification only
  fs::path input_path = fs::path(DTE_SOURCE_DIR) / "dte_native" / "examples" / "33.json";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) n = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--mode" && i + 1 < argc) mode = argv[++i];
    else if (a == "--input" && i + 1 < argc) input_path = argv[++i];
    else if (a == "--corpus" && i + 1 < argc) corpus = argv[++i];
    else if (a == "--threads" && i + 1 < argc)
      paired_threads = std::max(1u, static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10)));
    else if (mode == "files" && a.rfind("--", 0) != 0) files.push_back(a);
    else {
      std::fprintf(stderr, "usage: %s [--n N] [--mode all|sign1|sign2|paired|verify|verify-schema|rss] "
                   "[--threads T (paired)]\n",
                   argv[0]);
      return 2;
    }
  }

  const std::string timestamp = local_now();
  const std::string today = timestamp.substr(0, 10);
  if (mode == "files") {
    // Every check of every file named after the options, one line each: diffing two builds'
    // outputs over real samples shows that an optimisation changed no verdict and no reason.
    dte::SiiKeyring ring;
    if (const char* keys = std::getenv("DTE_SII_KEYS_DIR")) ring.add_dir(keys);
    const char* xsd = std::getenv("DTE_XSD_DIR");
    std::shared_ptr<dte::SchemaSet> set = xsd && *xsd ? dte::SchemaSet::shared(xsd) : nullptr;
    dte::VerifyOptions vo;
    vo.keyring = &ring;
    vo.schemas = set.get();
    for (const auto& f : files) {
      dte::VerifyReport r = dte::verify_document(read_file(f), vo);
      for (const auto& c : r.checks)
        std::printf("%s\t%s\t%s\t%d\t%s\n", f.c_str(), c.name.c_str(), c.subject.c_str(),
                    static_cast<int>(c.status), c.reason.c_str());
    }
    return 0;
  }

  const dte::testkit::KeyPair sii = dte::testkit::make_rsa_key(1024);
  dte::SiiKeyring keyring;
  keyring.add_pem(100, sii.public_pem);
  dte::testkit::CafSpec cs;
  cs.issuer_rut = kIssuer;
  cs.doc_type = 33;
  cs.folio_from = 1;
  cs.folio_to = 10'000'000;
  cs.authorized_on = today;
  const dte::Caf caf = dte::Caf::parse(dte::testkit::make_caf(cs, sii.private_pem));
  dte::testkit::CertSpec certspec;
  certspec.rut = "11111111-1";
  certspec.days_offset = -30;
  certspec.days_valid = 3650;
  auto bundle = dte::testkit::make_certificate(certspec, "bench");
  const dte::Certificate cert = dte::Certificate::from_pem(bundle.cert_pem, bundle.key_pem);

  const std::string text = read_file(input_path);
  if (text.empty()) {
    std::fprintf(stderr, "cannot read %s\n", input_path.c_str());
    return 2;
  }
  nlohmann::json base = nlohmann::json::parse(text);
  base["Encabezado"]["Emisor"]["RUTEmisor"] = kIssuer;
  base["Encabezado"]["IdDoc"]["FchEmis"] = today;
  auto inputs_from = [&](std::size_t first, std::size_t count) {
    std::vector<std::string> v;
    v.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      nlohmann::json j = base;
      j["Encabezado"]["IdDoc"]["Folio"] = static_cast<long long>(first + i);
      v.push_back(j.dump());
    }
    return v;
  };

  dte::SignOptions so;
  so.timestamp = timestamp;
  so.today = today;
  so.keyring = &keyring;
  const std::vector<const dte::Caf*> cafs{&caf};

  double floor_cpu = 0;
  auto sign_run = [&](unsigned threads, std::vector<std::string>* keep) {
    if (floor_cpu == 0) {
      floor_cpu = floor_cpu_per_doc(cert.private_key(), 300);
      std::printf("floor  1/(1/s2048 + 1/s512) = %.1f docs/cpu-s  (%.3f cpu-ms/doc)\n",
                  1.0 / floor_cpu, 1000.0 * floor_cpu);
    }
    auto inputs = inputs_from(1, n);
    auto t0 = Clock::now();
    double c0 = process_cpu();
    auto out = dte::sign_many(inputs, cafs, cert, so, threads);
    double s = seconds_since(t0);
    double cpu = process_cpu() - c0;
    std::size_t bad = 0;
    for (auto& o : out) {
      if (!o.ok) {
        if (!bad) std::fprintf(stderr, "sign error: %s: %s\n", o.error_code.c_str(),
                               o.error_message.c_str());
        ++bad;
      } else if (keep) {
        keep->push_back(std::move(o.dte.xml));
      }
    }
    std::printf("sign   threads=%u n=%zu  %.1f docs/s wall  %.1f docs/cpu-s  (%.3f cpu-ms/doc, "
                "%.0f%% of floor)%s\n",
                threads, n, n / s, n / cpu, 1000.0 * cpu / n, 100.0 * floor_cpu * n / cpu,
                bad ? "  ERRORS" : "");
    std::fflush(stdout);
  };

  std::shared_ptr<dte::SchemaSet> schemas;
  auto verify_run = [&](const std::vector<std::string>& signed_xml, bool with_schema) {
    dte::VerifyOptions vo;
    vo.keyring = &keyring;
    if (with_schema) {
      const char* env = std::getenv("DTE_XSD_DIR");
      std::string dir = env && *env ? env : std::string(DTE_SHARED_DIR) + "/xsd";
      if (!schemas) schemas = dte::SchemaSet::shared(dir);
      vo.schemas = schemas.get();
    }
    auto t0 = Clock::now();
    double c0 = process_cpu();
    std::size_t failed = 0;
    for (const auto& x : signed_xml) {
      dte::VerifyReport r = dte::verify_document(x, vo);
      if (!r.ok()) {
        if (!failed)
          for (auto& c : r.checks)
            if (c.status == dte::CheckStatus::kFail)
              std::fprintf(stderr, "verify fail: %s: %s\n", c.name.c_str(), c.reason.c_str());
        ++failed;
      }
    }
    double s = seconds_since(t0);
    double cpu = process_cpu() - c0;
    std::printf("verify schema=%s n=%zu  %.1f docs/s wall  %.1f docs/cpu-s  (%.3f cpu-ms/doc)%s\n",
                with_schema ? "yes" : "no ", signed_xml.size(), signed_xml.size() / s,
                signed_xml.size() / cpu, 1000.0 * cpu / signed_xml.size(), failed ? "  FAILURES" : "");
    std::fflush(stdout);
  };

  if (mode == "rss") {
    std::printf("rss before: %ld kB\n", rss_kb());
    const std::size_t batch = 1000;
    for (std::size_t done = 0; done < n; done += batch) {
      auto inputs = inputs_from(1 + done, batch);
      auto out = dte::sign_many(inputs, cafs, cert, so, 2);
      std::vector<std::string> xml;
      for (auto& o : out)
        if (o.ok) xml.push_back(std::move(o.dte.xml));
      dte::VerifyOptions vo;
      vo.keyring = &keyring;
      for (std::size_t i = 0; i < xml.size(); i += 10) (void)dte::verify_document(xml[i], vo);
      if ((done / batch) % 10 == 9 || done == 0)
        std::printf("after %zu signed: rss %ld kB\n", done + batch, rss_kb());
      std::fflush(stdout);
    }
    return 0;
  }

  if (mode == "paired") {
    // On a shared VM the CPU's speed drifts by tens of percent within a second, so a floor timed
    // once and a signing run timed later can disagree by more than the effect being measured.
    // Here short slices alternate, floor-sign-sign-floor (so a steady drift cancels): 100 floor
    // pairs on this thread, then 100 documents per thread through sign_many on --threads
    // threads. One thread is compared in CPU time; several in wall time (documents per second
    // against the one-core floor, the "1.9x that on two"). Each round's ratio compares
    // neighbours; the median over the rounds is the figure, printed beside the totals' ratio.
    constexpr std::size_t kSlice = 100;
    const unsigned t = paired_threads;
    const std::size_t rounds = std::max<std::size_t>(6, n / (2 * kSlice * t));
    std::vector<double> ratios;
    double floor_total = 0, sign_total = 0;
    auto inputs = inputs_from(1, kSlice * t);
    auto sign_slice = [&]() -> double {  // seconds per document: CPU on one thread, else wall
      const double c0 = process_cpu();
      const auto t0 = Clock::now();
      auto out = dte::sign_many(inputs, cafs, cert, so, t);
      const double spent = t == 1 ? process_cpu() - c0 : seconds_since(t0);
      for (auto& o : out)
        if (!o.ok) {
          std::fprintf(stderr, "sign error: %s: %s\n", o.error_code.c_str(), o.error_message.c_str());
          std::exit(1);
        }
      return spent / static_cast<double>(inputs.size());
    };
    (void)sign_slice();  // warm: caches, memos, the pool's threads
    (void)floor_cpu_per_doc(cert.private_key(), kSlice);
    for (std::size_t r = 0; r < rounds; ++r) {
      double f, s;
      if (r % 2 == 0) {
        f = floor_cpu_per_doc(cert.private_key(), kSlice);
        s = sign_slice();
      } else {
        s = sign_slice();
        f = floor_cpu_per_doc(cert.private_key(), kSlice);
      }
      ratios.push_back(f / s);
      floor_total += f;
      sign_total += s;
    }
    std::sort(ratios.begin(), ratios.end());
    std::printf("paired %zu rounds of %zu: floor %.3f cpu-ms/doc, sign_many(%u thread%s) %.3f "
                "%s-ms/doc; %s median %.1f%% (quartiles %.1f%%-%.1f%%), of the totals %.1f%%\n",
                rounds, kSlice * t, 1000.0 * floor_total / rounds, t, t == 1 ? "" : "s",
                1000.0 * sign_total / rounds, t == 1 ? "cpu" : "wall",
                t == 1 ? "share of floor" : "wall rate against the one-core floor",
                100.0 * ratios[ratios.size() / 2], 100.0 * ratios[ratios.size() / 4],
                100.0 * ratios[3 * ratios.size() / 4], 100.0 * floor_total / sign_total);
    return 0;
  }

  std::vector<std::string> signed_xml;
  if (mode == "all" || mode == "sign1") sign_run(1, mode == "all" ? &signed_xml : nullptr);
  if (mode == "all" || mode == "sign2") sign_run(2, nullptr);
  if (mode == "verify" || mode == "verify-schema") {
    if (!corpus.empty() && fs::exists(corpus)) {
      // Length-prefixed records; the material (keys) is new on every run, so the keyring
      // comes from the corpus too: its first record is the SII public key PEM.
      std::string all = read_file(corpus);
      std::size_t pos = 0;
      bool first = true;
      while (pos < all.size()) {
        std::size_t len = std::strtoul(all.c_str() + pos, nullptr, 10);
        pos = all.find('\n', pos) + 1;
        if (first) {
          keyring = dte::SiiKeyring();
          keyring.add_pem(100, all.substr(pos, len));
          first = false;
        } else {
          signed_xml.push_back(all.substr(pos, len));
        }
        pos += len;
      }
    } else {
      auto inputs = inputs_from(1, n);
      for (auto& o : dte::sign_many(inputs, cafs, cert, so, 2))
        if (o.ok) signed_xml.push_back(std::move(o.dte.xml));
      if (!corpus.empty()) {
        std::ofstream out(corpus, std::ios::binary);
        out << sii.public_pem.size() << "\n" << sii.public_pem;
        for (auto& x : signed_xml) out << x.size() << "\n" << x;
      }
    }
  }
  if (mode == "all" || mode == "verify") verify_run(signed_xml, false);
  if (mode == "all" || mode == "verify-schema") verify_run(signed_xml, true);
  std::printf("rss: %ld kB\n", rss_kb());
  return 0;
}
