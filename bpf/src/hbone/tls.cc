// SPDX-License-Identifier: Apache-2.0
#include "tls.h"

#include "ktls.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <stdexcept>

namespace skein::hbone {

namespace {

// ztunnel's order; there is no ChaCha20 (tls.ts TLS13_CIPHERSUITES).
constexpr const char* kCiphersuites =
    "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256";
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

Bio MemBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

[[noreturn]] void Fail(const char* what) {
  throw std::runtime_error(OpensslError(what));
}

}  // namespace

std::string OpensslError(const char* what) {
  unsigned long e = ERR_get_error();
  std::string msg(what);
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  ERR_clear_error();
  return msg;
}

namespace {

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  // h2 or nothing: a client offering only other protocols gets an alert.
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// One context: the versions and suites, the certificate chain and key, the
// roots the peer's chain must lead to.
SSL_CTX* MakeContext(bool server, const std::string& chain_pem,
                     const std::string& key_pem, const std::string& roots_pem,
                     const std::string& groups) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) Fail("SSL_CTX_new");
  try {
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_set_ciphersuites(ctx, kCiphersuites) != 1)
      Fail("SSL_CTX_set_ciphersuites");
    if (!groups.empty() && SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1)
      Fail("SSL_CTX_set1_groups_list");
    if (server) {
      SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      // No resumption, as ztunnel: no tickets to hand out.
      SSL_CTX_set_num_tickets(ctx, 0);
    } else {
      // set_alpn_protos returns 0 on success.
      if (SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof kAlpnH2) != 0)
        Fail("SSL_CTX_set_alpn_protos");
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      // Traffic secrets for kTLS, kept only for module-carried tunnels.
      SSL_CTX_set_keylog_callback(ctx, KtlsKeylog);
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // No read-ahead here: a session's socket has its own (worker.cc,
    // AttachSocket), and kTLS wants none (ktls.cc).

    // The leaf, then its intermediates.
    Bio chain = MemBio(chain_pem);
    X509* leaf = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr) Fail("certificate chain: no PEM certificate");
    int ok = SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    if (ok != 1) Fail("SSL_CTX_use_certificate");
    for (;;) {
      X509* ca = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
      if (ca == nullptr) break;
      if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
        X509_free(ca);
        Fail("SSL_CTX_add0_chain_cert");
      }
    }
    ERR_clear_error();  // the end of the PEM stream

    Bio key = MemBio(key_pem);
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr);
    if (pkey == nullptr) Fail("private key: no PEM key");
    ok = SSL_CTX_use_PrivateKey(ctx, pkey);
    EVP_PKEY_free(pkey);
    if (ok != 1) Fail("SSL_CTX_use_PrivateKey");
    if (SSL_CTX_check_private_key(ctx) != 1)
      Fail("the private key does not match the certificate");

    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    Bio roots = MemBio(roots_pem);
    int n = 0;
    for (;;) {
      X509* root = PEM_read_bio_X509(roots.get(), nullptr, nullptr, nullptr);
      if (root == nullptr) break;
      ok = X509_STORE_add_cert(store, root);
      X509_free(root);
      if (ok != 1) Fail("X509_STORE_add_cert");
      n++;
    }
    ERR_clear_error();
    if (n == 0) throw std::runtime_error("roots: no PEM certificate");
  } catch (...) {
    SSL_CTX_free(ctx);
    throw;
  }
  return ctx;
}

}  // namespace

Credential::Credential(const std::string& chain_pem, const std::string& key_pem,
                       const std::string& roots_pem, const std::string& groups) {
  ERR_clear_error();
  client_ = MakeContext(false, chain_pem, key_pem, roots_pem, groups);
  try {
    server_ = MakeContext(true, chain_pem, key_pem, roots_pem, groups);
  } catch (...) {
    SSL_CTX_free(client_);
    throw;
  }
}

std::string CheckGroups(const std::string& groups) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr) return OpensslError("SSL_CTX_new");
  std::string why;
  if (SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1)
    why = OpensslError(("OpenSSL " + std::string(OpenSSL_version(OPENSSL_VERSION_STRING)) +
                        " does not take the groups '" + groups + "'").c_str());
  SSL_CTX_free(ctx);
  return why;
}

Credential::~Credential() {
  SSL_CTX_free(client_);
  SSL_CTX_free(server_);
}

std::string CheckServer(SSL* ssl, const std::vector<std::string>& expected) {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn_len != 2 || alpn[0] != 'h' || alpn[1] != '2')
    return "the server did not negotiate ALPN h2";
  long vr = SSL_get_verify_result(ssl);
  if (vr != X509_V_OK)
    return std::string("the server certificate is not trusted: ") +
           X509_verify_cert_error_string(vr);
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return "the server presented no certificate";
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(peer, NID_subject_alt_name, nullptr, nullptr));
  std::string got;
  bool match = false;
  int count = names == nullptr ? 0 : sk_GENERAL_NAME_num(names);
  for (int i = 0; i < count && !match; i++) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
    if (uri.rfind("spiffe://", 0) != 0) continue;
    for (const std::string& e : expected) {
      if (uri == e) match = true;
    }
    if (!got.empty()) got += ", ";
    got += uri;
  }
  GENERAL_NAMES_free(names);
  if (match) return "";
  std::string want;
  for (const std::string& e : expected) want += (want.empty() ? "" : ", ") + e;
  return "the server presented " + (got.empty() ? "no SPIFFE identity" : got) +
         ", expected one of " + (want.empty() ? "(none)" : want);
}

}  // namespace skein::hbone

namespace skein::hbone {

namespace {

// spiffe://<td>/ns/<ns>/sa/<sa>, as identity/spiffe.ts parseSpiffe: five
// parts, "ns" and "sa" in place, namespace and service account non-empty.
bool ParseSpiffe(const std::string& uri, std::string* trust_domain) {
  static const std::string kPrefix = "spiffe://";
  if (uri.rfind(kPrefix, 0) != 0) return false;
  std::vector<std::string> parts;
  size_t start = kPrefix.size();
  for (;;) {
    size_t slash = uri.find('/', start);
    parts.push_back(uri.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[2].empty() || parts[4].empty())
    return false;
  *trust_domain = parts[0];
  return true;
}

}  // namespace

std::string CheckClient(SSL* ssl, const std::string& trust_domain, std::string* peer) {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn_len != 2 || alpn[0] != 'h' || alpn[1] != '2')
    return "the client did not negotiate ALPN h2";
  long vr = SSL_get_verify_result(ssl);
  if (vr != X509_V_OK)
    return std::string("the client certificate is not trusted: ") + X509_verify_cert_error_string(vr);
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return "the client presented no certificate";
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  int count = names == nullptr ? 0 : sk_GENERAL_NAME_num(names);
  std::string all;
  bool in_domain = false;
  peer->clear();
  for (int i = 0; i < count; i++) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
    std::string td;
    if (!ParseSpiffe(uri, &td)) continue;
    if (peer->empty()) *peer = uri;
    if (td == trust_domain) in_domain = true;
    all += (all.empty() ? "" : ", ") + uri;
  }
  GENERAL_NAMES_free(names);
  if (peer->empty()) return "the client certificate has no SPIFFE URI SAN";
  if (!in_domain) return "the client identity " + all + " is not in trust domain " + trust_domain;
  return "";
}

}  // namespace skein::hbone

namespace skein::hbone {

CrlList::CrlList(const std::vector<std::string>& ders) {
  for (size_t i = 0; i < ders.size(); i++) {
    const auto* p = reinterpret_cast<const unsigned char*>(ders[i].data());
    X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(ders[i].size()));
    if (crl == nullptr) {
      for (X509_CRL* c : crls_) X509_CRL_free(c);
      crls_.clear();
      throw std::runtime_error("CRL " + std::to_string(i + 1) + " does not parse: " + OpensslError("d2i_X509_CRL"));
    }
    crls_.push_back(crl);
  }
}

CrlList::~CrlList() {
  for (X509_CRL* c : crls_) X509_CRL_free(c);
}

namespace {

std::string NameText(const X509_NAME* name) {
  char buf[256];
  X509_NAME_oneline(name, buf, sizeof buf);
  return buf;
}

std::string SerialHex(const X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* hex = bn == nullptr ? nullptr : BN_bn2hex(bn);
  std::string out = hex == nullptr ? "?" : hex;
  OPENSSL_free(hex);
  BN_free(bn);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

std::string CheckRevocation(SSL* ssl, const CrlList& list) {
  if (list.empty()) return "";
  STACK_OF(X509)* chain = SSL_get0_verified_chain(ssl);
  // Verified already (CheckServer/CheckClient ran first); no chain is no verification.
  if (chain == nullptr) return "no verified chain to check against the CRL";
  int n = sk_X509_num(chain);
  // The last certificate is the anchor: nothing above it signs its CRL.
  for (int i = 0; i + 1 < n; i++) {
    X509* cert = sk_X509_value(chain, i);
    X509* issuer = sk_X509_value(chain, i + 1);
    for (X509_CRL* crl : list.crls()) {
      if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) != 0) continue;
      std::string by = NameText(X509_CRL_get_issuer(crl));
      if ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(issuer) & KU_CRL_SIGN) == 0)
        return "the CRL of " + by + " is signed by a CA that may not sign CRLs (no cRLSign key usage)";
      EVP_PKEY* key = X509_get0_pubkey(issuer);
      if (key == nullptr || X509_CRL_verify(crl, key) != 1) {
        ERR_clear_error();
        return "the CRL of " + by + " does not verify under its issuer's key";
      }
      X509_REVOKED* entry = nullptr;
      // 1: listed; 2: listed as removeFromCRL (a delta's un-revocation), not revoked.
      if (X509_CRL_get0_by_cert(crl, &entry, cert) == 1) {
        return "certificate " + SerialHex(cert) + " (" + (i == 0 ? std::string("the peer") : "CA " + NameText(X509_get_subject_name(cert))) +
               ") is revoked by the CRL of " + by;
      }
    }
  }
  return "";
}

}  // namespace skein::hbone
