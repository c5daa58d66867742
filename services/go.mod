module github.com/cosell-dev/cosell/services

go 1.26.8

require github.com/cosell-dev/cosell/contracts v0.0.0

replace github.com/cosell-dev/cosell/contracts => ../contracts
