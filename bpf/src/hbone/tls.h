// SPDX-License-Identifier: Apache-2.0
// HBONE mTLS as ztunnel configures rustls and as proxy/hbone/tls.ts does for
// Node: TLS 1.3 with the two AES-GCM suites, ALPN h2, a client certificate,
// no SNI, no resumption, SPIFFE URI SAN checks instead of hostname checks.
// OpenSSL is Node's own (its exported symbols; see docs/native-engine.md).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

namespace skein::hbone {

// One workload certificate as an SSL_CTX (client side). Shared by the
// sessions made with it; freed when the last one lets go.
class Credential {
 public:
  // Throws std::runtime_error with OpenSSL's reason on bad PEM or a key that
  // does not match the leaf. `groups`: the key exchange groups offered and
  // accepted (SSL_CTX_set1_groups_list, "X25519MLKEM768" under
  // COMPLIANCE_POLICY=pqc), or "" for OpenSSL's defaults.
  Credential(const std::string& chain_pem, const std::string& key_pem,
             const std::string& roots_pem, const std::string& groups);
  ~Credential();
  Credential(const Credential&) = delete;
  Credential& operator=(const Credential&) = delete;
  SSL_CTX* client() const { return client_; }
  // The 15008 side: the same certificate, a client certificate required.
  SSL_CTX* server() const { return server_; }

 private:
  SSL_CTX* client_ = nullptr;
  SSL_CTX* server_ = nullptr;
};

// "" when this OpenSSL takes `groups` as a group list, else why not.
std::string CheckGroups(const std::string& groups);

// The CRLs in force (CRL_PATH, parsed by TypeScript and handed over as DER):
// immutable once made, swapped whole at a reload.
class CrlList {
 public:
  // Throws std::runtime_error naming the CRL that does not parse.
  explicit CrlList(const std::vector<std::string>& ders);
  ~CrlList();
  CrlList(const CrlList&) = delete;
  CrlList& operator=(const CrlList&) = delete;
  bool empty() const { return crls_.empty(); }
  const std::vector<X509_CRL*>& crls() const { return crls_; }

 private:
  std::vector<X509_CRL*> crls_;
};

// After a verified handshake, the chain OpenSSL verified against `crls`, as
// identity/crl.ts CrlSet.check (ztunnel's webpki settings): every
// certificate below the anchor is looked up in the CRLs its issuer's name
// signed; such a CRL must verify under that issuer's key (which may sign
// CRLs) or the chain fails; no CRL for an issuer is no revocation, an
// expired one still counts. Returns "" or why the chain is refused.
std::string CheckRevocation(SSL* ssl, const CrlList& crls);

// The first OpenSSL error on this thread's queue as text (and clears it).
std::string OpensslError(const char* what);

// After a completed handshake: ALPN must be h2, the chain must have verified
// against the roots, and the server leaf must carry one of `expected`
// (SPIFFE URIs, compared exactly: the URI form is canonical). Returns "" when
// all hold, else why not (fail closed).
std::string CheckServer(SSL* ssl, const std::vector<std::string>& expected);

// After a completed server handshake (ztunnel's TrustDomainVerifier, as
// proxy/hbone/tls.ts verifyPeer): ALPN h2, a verified chain, and a SPIFFE
// URI SAN in `trust_domain`. Sets `peer` to the first SPIFFE URI SAN (the
// client's identity). Returns "" when all hold, else why not.
std::string CheckClient(SSL* ssl, const std::string& trust_domain, std::string* peer);

}  // namespace skein::hbone
