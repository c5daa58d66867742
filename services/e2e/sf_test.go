package e2e

import (
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
)

// sfPolls counts sf-ingest's polls: each is one Composite call holding its change queries.
func sfPolls(s *stack.Stack) int {
	return s.SF.Counts()["composite"]
}
