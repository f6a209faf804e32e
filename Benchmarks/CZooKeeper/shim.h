// Debian's libzookeeper-st-dev: the single-threaded ZooKeeper C client (its fd and timeout fit an event loop).
#include <zookeeper/zookeeper.h>
