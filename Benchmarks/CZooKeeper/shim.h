// Debian's libzookeeper-st-dev: the single-threaded ZooKeeper C client (its fd and timeout fit an event loop).
#include <zookeeper/zookeeper.h>

// The world-readable ACL as a pointer: Swift 6 refuses direct use of a mutable C global.
static inline struct ACL_vector *baton_zookeeper_open_acl(void) { return &ZOO_OPEN_ACL_UNSAFE; }
