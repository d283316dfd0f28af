package steps

import (
	"context"
	"errors"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

func TestRegistrySettings(t *testing.T) {
	got := Default().Settings()
	if len(got) != 2 || got["vault"] != (vaultSettings{}) || got[HostSetting] != (hostSettings{}) {
		t.Errorf("the built-in kinds use %#v, want the vault and host blocks alone", got)
	}
	if got := (Registry{"write": (*Write)(nil), "chown": (*Chown)(nil)}).Settings(); len(got) != 1 || got[HostSetting] != (hostSettings{}) {
		t.Errorf("write and chown use the host block (on), got %#v", got)
	}
	if got := (Registry{"plain": noSettings{}}).Settings(); len(got) != 0 {
		t.Errorf("a kind that declares no settings uses no settings block, got %#v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("two different settings of one block type should panic")
		}
	}()
	Registry{"issue": (*Issue)(nil), "other": otherVaultUser{}}.Settings()
}

// noSettings is a kind that declares no settings block.
type noSettings struct{ Step }

// otherVaultUser declares a vault block of its own, unlike the issue kind's.
type otherVaultUser struct{ Step }

type otherVault struct{ vaultSettings }

func (otherVaultUser) Settings() Settings { return Settings{"vault": otherVault{}} }

func TestVaultSettings(t *testing.T) {
	t.Setenv("VAULT_ADDR", "https://127.0.0.1:22400")
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("VAULT_CACERT", "")
	t.Setenv("VAULT_TLS_SERVER_NAME", "")
	t.Setenv("VAULT_CLIENT_CERT", "/admin.crt")
	t.Setenv("VAULT_CLIENT_KEY", "/admin.key")
	s := vaultSettings{}
	bad := testConfig(t, s.Spec(), map[string]cty.Value{"auth": cty.ObjectVal(map[string]cty.Value{
		"method": cty.StringVal("ldap"), "mount": cty.NullVal(cty.String), "role": cty.NullVal(cty.String),
	})})
	var attrErr *AttrError
	if err := s.Check(bad); !errors.As(err, &attrErr) || attrErr.Path != "auth.method" {
		t.Errorf("Check: an unsupported auth method should be an error on auth.method, got %v", err)
	}
	if err := s.Open(NewEnv(nil), bad); !errors.As(err, &attrErr) || attrErr.Path != "auth.method" {
		t.Errorf("Open: an unsupported auth method should be an error on auth.method, got %v", err)
	}
	// No address in the block: Check does not look at VAULT_ADDR, Open
	// takes it.
	empty := NewConfig(cty.EmptyObjectVal)
	if err := s.Check(empty); err != nil {
		t.Errorf("Check of an empty block: %v", err)
	}
	env := NewEnv(nil)
	if err := s.Open(env, empty); err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := VaultConnection{Address: "https://127.0.0.1:22400", ClientCert: "/admin.crt", ClientKey: "/admin.key", AuthMethod: "cert", AuthMount: "cert"}
	if got := env.session.conn; got != want {
		t.Errorf("Open read %+v\nwant %+v", got, want)
	}
	// Nothing was logged in to, so there is nothing to revoke; Vault is
	// not reached from then on.
	if err := env.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := env.Vault(context.Background()); err == nil {
		t.Error("Vault after Close should fail")
	}
}
