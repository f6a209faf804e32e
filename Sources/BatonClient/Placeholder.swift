// BatonClient: work in progress
