// Debian's libzookeeper-st-dev: the single-threaded ZooKeeper C client (its fd and timeout fit an event loop).
// Used by the product (BatonZooKeeper: the zookeeper:// store) and by the benchmarks (the direct recipe).
#include <zookeeper/zookeeper.h>

// ACLs as pointers: Swift 6 refuses direct use of a mutable C global.
// World-readable and writable: what Baton creates when no digest credentials are configured.
static inline struct ACL_vector *baton_zookeeper_open_acl(void) { return &ZOO_OPEN_ACL_UNSAFE; }
// Everything for the authenticated creator only (scheme "auth": the digest identity of the session).
static inline struct ACL_vector *baton_zookeeper_creator_acl(void) { return &ZOO_CREATOR_ALL_ACL; }
