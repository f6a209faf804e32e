// BatonServer: work in progress
