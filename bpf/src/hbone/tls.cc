// SPDX-License-Identifier: Apache-2.0
#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

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

Credential::Credential(const std::string& chain_pem, const std::string& key_pem,
                       const std::string& roots_pem) {
  ERR_clear_error();
  client_ = SSL_CTX_new(TLS_client_method());
  if (client_ == nullptr) Fail("SSL_CTX_new");
  try {
    SSL_CTX_set_min_proto_version(client_, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(client_, TLS1_3_VERSION);
    if (SSL_CTX_set_ciphersuites(client_, kCiphersuites) != 1)
      Fail("SSL_CTX_set_ciphersuites");
    // set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(client_, kAlpnH2, sizeof kAlpnH2) != 0)
      Fail("SSL_CTX_set_alpn_protos");
    SSL_CTX_set_options(client_, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(client_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(client_, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read what the socket has, not one record header then its body: half
    // the read(2) calls under load.
    SSL_CTX_set_read_ahead(client_, 1);
    SSL_CTX_set_verify(client_, SSL_VERIFY_PEER, nullptr);

    // The leaf, then its intermediates.
    Bio chain = MemBio(chain_pem);
    X509* leaf = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr) Fail("certificate chain: no PEM certificate");
    int ok = SSL_CTX_use_certificate(client_, leaf);
    X509_free(leaf);
    if (ok != 1) Fail("SSL_CTX_use_certificate");
    for (;;) {
      X509* ca = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
      if (ca == nullptr) break;
      if (SSL_CTX_add0_chain_cert(client_, ca) != 1) {
        X509_free(ca);
        Fail("SSL_CTX_add0_chain_cert");
      }
    }
    ERR_clear_error();  // the end of the PEM stream

    Bio key = MemBio(key_pem);
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr);
    if (pkey == nullptr) Fail("private key: no PEM key");
    ok = SSL_CTX_use_PrivateKey(client_, pkey);
    EVP_PKEY_free(pkey);
    if (ok != 1) Fail("SSL_CTX_use_PrivateKey");
    if (SSL_CTX_check_private_key(client_) != 1)
      Fail("the private key does not match the certificate");

    X509_STORE* store = SSL_CTX_get_cert_store(client_);
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
    SSL_CTX_free(client_);
    throw;
  }
}

Credential::~Credential() { SSL_CTX_free(client_); }

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
