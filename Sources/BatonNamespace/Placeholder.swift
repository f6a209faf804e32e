// BatonNamespace: work in progress
