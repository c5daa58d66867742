module github.com/cosell-dev/cosell/deploy/salesforce

go 1.26.8
