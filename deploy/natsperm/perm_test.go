package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
)

// The committed files are what the generator writes today: contracts and permissions cannot drift.
func TestCommittedFilesMatchGenerator(t *testing.T) {
	for name, want := range Files() {
		got, err := os.ReadFile(filepath.Join("..", "nats", name))
		if err != nil {
			t.Fatalf("%v (run `go run ./deploy/natsperm` from the repository root)", err)
		}
		if string(got) != want {
			t.Errorf("deploy/nats/%s is out of date with contracts/: run `go run ./deploy/natsperm` from the repository root", name)
		}
	}
}

func user(t *testing.T, name string) User {
	t.Helper()
	for _, u := range Users() {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no user %q", name)
	return User{}
}

func TestEveryStageHasItsOwnUser(t *testing.T) {
	var names []string
	for _, u := range Users() {
		names = append(names, u.Name)
	}
	want := append(contracts.Stages(), AdminUser)
	if !slices.Equal(names, want) {
		t.Fatalf("users %v, want %v", names, want)
	}
	for _, u := range Users()[:len(Users())-1] {
		if u.Publish == nil || u.Subscribe == nil {
			t.Errorf("%s is unrestricted", u.Name)
		}
		for _, s := range append(append([]string{}, u.Publish...), u.Subscribe...) {
			if s == ">" || s == "$JS.API.>" || s == "_INBOX.>" || s == "cosell.>" {
				t.Errorf("%s may use %q: far more than its job", u.Name, s)
			}
		}
	}
}

func TestEveryDurableIsPulledOnlyByItsStage(t *testing.T) {
	for _, c := range contracts.Consumers() {
		next := "$JS.API.CONSUMER.MSG.NEXT." + c.Stream + "." + c.Durable
		ack := "$JS.ACK." + c.Stream + "." + c.Durable + ".>"
		for _, u := range Users()[:len(Users())-1] {
			mine := u.Name == c.Stage
			if slices.Contains(u.Publish, next) != mine || slices.Contains(u.Publish, ack) != mine {
				t.Errorf("%s pulling %s/%s: allowed=%v, want %v", u.Name, c.Stream, c.Durable, !mine, mine)
			}
		}
	}
}

func TestEveryStreamSubjectHasAPublisherAndEveryBucketAWriter(t *testing.T) {
	for _, s := range contracts.Streams() {
		for _, subj := range s.Subjects {
			if s.Name == contracts.StreamDeadLetter {
				continue // each consuming stage has its own cosell.dlq.<stage>.>
			}
			found := false
			for _, u := range Users()[:len(Users())-1] {
				found = found || slices.Contains(u.Publish, subj)
			}
			if !found {
				t.Errorf("no service may publish to %s (stream %s)", subj, s.Name)
			}
		}
	}
	for _, b := range contracts.Buckets() {
		found := false
		for _, u := range Users()[:len(Users())-1] {
			found = found || slices.Contains(u.Publish, "$KV."+b+".>")
		}
		if !found {
			t.Errorf("no service may write bucket %s", b)
		}
	}
}

func TestIngestPublishesObservationsNotCommands(t *testing.T) {
	pc := user(t, contracts.StagePCIngest)
	if !slices.Contains(pc.Publish, contracts.SubjectReferralObserved+".>") {
		t.Errorf("pc-ingest may not publish referral observations: %v", pc.Publish)
	}
	for _, s := range pc.Publish {
		if strings.Contains(s, ".requested") || strings.HasPrefix(s, contracts.SubjectAudit) ||
			strings.Contains(s, ".written") || strings.Contains(s, "KV.cosell_links") {
			t.Errorf("pc-ingest may publish %q", s)
		}
	}
	for _, s := range user(t, contracts.StageMapper).Publish {
		if strings.Contains(s, "dlq.") && !strings.Contains(s, "dlq.mapper.") {
			t.Errorf("mapper may dead-letter as another stage: %q", s)
		}
	}
}

func TestPasswordsAreReferencesNotValues(t *testing.T) {
	conf := Conf()
	for _, u := range Users() {
		if !strings.Contains(conf, "password: $"+u.PasswordVar()+"\n") {
			t.Errorf("%s's password is not the variable $%s", u.Name, u.PasswordVar())
		}
		if !strings.Contains(Values(), "key: "+u.Name+"\n") {
			t.Errorf("values do not read %s's password from the Secret", u.Name)
		}
	}
}

func TestLastReadsNameAStream(t *testing.T) {
	for _, r := range roles() {
		for _, root := range r.lastOf {
			if streamOf(root) == "" {
				t.Errorf("%s reads the last message of %s, which no stream holds", r.stage, root)
			}
		}
	}
}
