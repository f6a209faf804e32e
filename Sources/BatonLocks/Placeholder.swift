// BatonLocks: work in progress
