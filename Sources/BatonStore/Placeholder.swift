// BatonStore: work in progress
