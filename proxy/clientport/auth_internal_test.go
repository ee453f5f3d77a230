package clientport

import (
	"strings"
	"testing"
)

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want User
	}{
		{"repl:s3cret:replication", User{Name: "repl", Password: "s3cret", Replication: true}},
		{"ops:pw:noreplication", User{Name: "ops", Password: "pw"}},
		{"a:p:w:d:replication,admin", User{Name: "a", Password: "p:w:d", Replication: true, Admin: true}},
		{"x:y:Admin", User{Name: "x", Password: "y", Admin: true}},
	} {
		got, err := ParseUser(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseUser(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "repl", "repl:s3cret", ":pw:replication", "default:pw:replication",
		"u::replication", "u:pw:", "u:pw:everything", "a b:pw:admin"} {
		if _, err := ParseUser(bad); err == nil {
			t.Errorf("ParseUser(%q) accepted", bad)
		}
	}
	// An error never shows the password.
	if _, err := ParseUser("u:hunter2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("ParseUser error %v", err)
	}
	users, err := ParseUsers("# users\n\nrepl:a:replication\r\n  ops:b:noreplication \n")
	if err != nil || len(users) != 2 || users[1].Name != "ops" || users[1].Password != "b" {
		t.Fatalf("ParseUsers: %+v, %v", users, err)
	}
	if _, err := ParseUsers("repl:a:replication\nbad\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("ParseUsers bad line: %v", err)
	}
	if err := CheckUsers([]User{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}}); err == nil {
		t.Fatal("duplicate user accepted")
	}
}

func TestAuthenticator(t *testing.T) {
	// Nothing configured: everyone is the nopass default user, and protected mode applies.
	a := newAuthenticator("", nil)
	if a.required || a.initial() == nil || a.initial().perms != permAll {
		t.Fatalf("no password: required %v initial %+v", a.required, a.initial())
	}
	if a.check("default", "anything") == nil || a.check("other", "") != nil {
		t.Fatal("nopass default user")
	}
	// Users only: the default user is off.
	a = newAuthenticator("", []User{{Name: "r", Password: "pw", Replication: true}, {Name: "o", Password: "pw"}})
	if !a.required || a.initial() != nil {
		t.Fatal("users without requirepass must require AUTH")
	}
	if a.check("default", "") != nil || a.check("default", "pw") != nil {
		t.Fatal("the default user must be off")
	}
	if acc := a.check("r", "pw"); acc == nil || acc.perms != permReplication {
		t.Fatalf("r: %+v", acc)
	}
	if acc := a.check("o", "pw"); acc == nil || acc.perms != 0 {
		t.Fatalf("o: %+v", acc)
	}
	if a.check("r", "pw ") != nil || a.check("r", "p") != nil || a.check("nobody", "pw") != nil {
		t.Fatal("wrong credentials accepted")
	}
	// requirepass: the default user with every permission.
	a = newAuthenticator("rp", nil)
	if acc := a.check("default", "rp"); !a.required || acc == nil || acc.perms != permAll {
		t.Fatalf("requirepass: %+v", acc)
	}
}
