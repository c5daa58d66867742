module github.com/cosell-dev/cosell/contracts

go 1.26.8
