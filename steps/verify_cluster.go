package steps

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// A vault_cluster check asks Vault, as the run's own identity (the vault
// block), for the autopilot state of its integrated storage
// (sys/storage/raft/autopilot/state), and passes when autopilot says the
// cluster is healthy and every expected voter is there, a voter, and
// healthy: between the nodes of a rollout, the cluster must have taken the
// last node back before the next one is touched.
//
//	verify "cluster" {
//	  timeout = "1m"
//	  vault_cluster {
//	    voters = ["vault-1", "vault-2", "vault-3"]   # Raft node ids
//	  }
//	}
//
// voter_count (at least that many voters, each healthy) may stand in
// for, or come with, the list. A node that is missing, not a voter or
// unhealthy is "not yet": the check retries until its timeout, and its
// error names the node. The run's identity needs read on
// sys/storage/raft/autopilot/state.
type clusterCheck struct {
	voters     []string
	voterCount int
}

var (
	_ check   = clusterCheck{}
	_ network = clusterCheck{}
)

// clusterSpec is the schema of a vault_cluster block.
func clusterSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"voters":      &hcldec.AttrSpec{Name: "voters", Type: cty.List(cty.String)},
		"voter_count": &hcldec.AttrSpec{Name: "voter_count", Type: cty.Number},
	}
}

// parseCluster reads a vault_cluster block.
func parseCluster(c Config) (check, []error) {
	var k clusterCheck
	var errs []error
	voters, err := c.StringList("voters")
	errs = append(errs, err)
	for i, v := range voters {
		switch {
		case strings.TrimSpace(v) == "":
			errs = append(errs, attrErr(c.Path("voters"), "element %d is empty: give the Raft node ids (node_id in each server's storage block)", i+1))
		case slices.Contains(voters[:i], v):
			errs = append(errs, attrErr(c.Path("voters"), "%q is there twice", v))
		}
	}
	k.voters = voters
	n, set, err := c.Int("voter_count")
	errs = append(errs, err)
	if set && err == nil {
		if n < 1 {
			errs = append(errs, attrErr(c.Path("voter_count"), "must be at least 1: how many voters the cluster must have"))
		}
		k.voterCount = int(n)
	}
	if c.Known("voters") && c.Known("voter_count") && len(voters) == 0 && !set {
		errs = append(errs, attrErr(c.Path("voters"), "name the voters the cluster must have (voters, the Raft node ids) or how many (voter_count)"))
	}
	return k, errs
}

// target implements check.
func (clusterCheck) target() string { return "the Vault cluster" }

// overNetwork implements network.
func (clusterCheck) overNetwork() {}

// nowFact implements check.
func (clusterCheck) nowFact(res checkResult) string { return res.cluster }

// attempt reads the autopilot state once, as the run's identity.
func (k clusterCheck) attempt(ctx context.Context, env *Env, _ time.Duration) (checkResult, error) {
	client, err := env.Vault(ctx)
	if err != nil {
		return checkResult{}, &inputError{err: fmt.Errorf("reading the cluster's autopilot state needs the run's Vault session: %w", err)}
	}
	const path = "sys/storage/raft/autopilot/state"
	st, err := client.Sys().RaftAutopilotStateWithContext(ctx)
	var resp *vaultapi.ResponseError
	switch {
	case errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden:
		return checkResult{}, &inputError{err: fmt.Errorf("reading %s: %s: the run's Vault identity needs read on it", path, vaultMessage(err))}
	case err != nil:
		return checkResult{}, fmt.Errorf("reading %s: %s", path, vaultMessage(err))
	case st == nil:
		return checkResult{}, &inputError{err: fmt.Errorf("Vault at %s has no autopilot state (%s not found): its storage is not integrated storage (Raft)", client.Address(), path)}
	}
	res := checkResult{cluster: describeCluster(st)}
	env.Log.Debug("autopilot state", "state", res.cluster)
	if err := k.problems(st); err != nil {
		return res, fmt.Errorf("%w (autopilot: %s)", err, res.cluster)
	}
	return res, nil
}

// problems says what keeps st from passing: autopilot's own verdict, an
// expected voter missing, not a voter or unhealthy, too few voters.
func (k clusterCheck) problems(st *vaultapi.AutopilotState) error {
	var problems []string
	for _, id := range k.voters {
		s := st.Servers[id]
		switch {
		case s == nil:
			problems = append(problems, fmt.Sprintf("node %s is not in the cluster", id))
		case !slices.Contains(st.Voters, id):
			problems = append(problems, fmt.Sprintf("node %s is not a voter (%s)", id, s.Status))
		case !s.Healthy:
			problems = append(problems, fmt.Sprintf("node %s is unhealthy (%s, last contact %s)", id, s.NodeStatus, s.LastContact))
		}
	}
	if k.voterCount > 0 {
		healthy := 0
		var unhealthy []string
		for _, id := range st.Voters {
			if s := st.Servers[id]; s != nil && s.Healthy {
				healthy++
			} else if !slices.Contains(k.voters, id) {
				unhealthy = append(unhealthy, id)
			}
		}
		if healthy < k.voterCount {
			msg := fmt.Sprintf("%d healthy voters, want at least %d", healthy, k.voterCount)
			if len(unhealthy) > 0 {
				msg += " (unhealthy: " + strings.Join(unhealthy, ", ") + ")"
			}
			problems = append(problems, msg)
		}
	}
	if !st.Healthy && len(problems) == 0 {
		problems = append(problems, "autopilot says the cluster is unhealthy")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// describeCluster says what autopilot reports, for the preview and the
// messages: "healthy, leader vault-1, voters vault-1, vault-2 (failure
// tolerance 1)".
func describeCluster(st *vaultapi.AutopilotState) string {
	health := "unhealthy"
	if st.Healthy {
		health = "healthy"
	}
	voters := slices.Clone(st.Voters)
	sort.Strings(voters)
	s := fmt.Sprintf("%s, leader %s, voters %s (failure tolerance %d)", health, st.Leader, strings.Join(voters, ", "), st.FailureTolerance)
	if len(st.NonVoters) > 0 {
		s += ", non-voters " + strings.Join(st.NonVoters, ", ")
	}
	return s
}
