module github.com/cosell-dev/cosell/deploy/k8s

go 1.26.8
