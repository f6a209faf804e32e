#ifndef BATON_COPENSSL_SHIM_H
#define BATON_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// OpenSSL spells these as macros over SSL_CTX_ctrl, SSL_ctrl and BIO_ctrl, which Swift cannot call.

static inline int baton_ssl_ctx_set_min_tls12(SSL_CTX *context) {
    return (int)SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
}

static inline void baton_ssl_ctx_harden(SSL_CTX *context) {
    // No renegotiation (a peer could make the server redo handshakes), no compression (CRIME).
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Idle connections give their record buffers back.
    SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS);
}

// Server name indication (a DNS name only: an IP address is not sent, RFC 6066 §3).
static inline int baton_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

// The peer certificate must name `name`: an IP address is matched against the IP SANs, a name
// against the DNS SANs (then the CN).
static inline int baton_ssl_expect_host(SSL *ssl, const char *name) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1) return 1;
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return X509_VERIFY_PARAM_set1_host(param, name, 0);
}

static inline long baton_bio_pending(BIO *bio) { return (long)BIO_ctrl_pending(bio); }

// The bytes a memory BIO holds (no copy); valid until the BIO is next written or reset.
static inline long baton_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

static inline int baton_bio_reset(BIO *bio) { return (int)BIO_reset(bio); }

// A memory BIO that reports "retry" when empty (the default is EOF), as a socket would.
static inline BIO *baton_bio_new_mem(void) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio) BIO_set_mem_eof_return(bio, -1);
    return bio;
}

// The subject CN of the peer's certificate into `buffer`; its length, or -1 without one.
static inline int baton_ssl_peer_common_name(SSL *ssl, char *buffer, int length) {
    X509 *certificate = SSL_get1_peer_certificate(ssl);
    if (!certificate) return -1;
    int result = X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, buffer, length);
    X509_free(certificate);
    return result;
}
#endif
