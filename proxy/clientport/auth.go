package clientport

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// User is an ACL-style user of the downstream port, beside the default user whose password
// is Config.RequirePass. Every user may run PING, AUTH, HELLO, INFO, ROLE, CONFIG GET,
// COMMAND, CLIENT, SELECT and QUIT; the permissions add the rest.
type User struct {
	Name, Password string
	// Replication allows PSYNC, SYNC and REPLCONF: what a replica runs.
	Replication bool
	// Admin allows CONFIG SET, CONFIG RESETSTAT and SHUTDOWN.
	Admin bool
}

// ParseUser reads a user in the command-line form name:password:permissions, where
// permissions is a comma-separated list of replication, noreplication and admin. The name
// ends at the first colon and the permissions start after the last one, so the password may
// contain colons.
func ParseUser(s string) (User, error) {
	first, last := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if first <= 0 || last == first {
		return User{}, fmt.Errorf("user %q: want name:password:permissions, e.g. repl:s3cret:replication", redactUser(s))
	}
	u := User{Name: s[:first], Password: s[first+1 : last]}
	if u.Name == "default" {
		return User{}, fmt.Errorf("user %q: the default user's password is --requirepass", u.Name)
	}
	if strings.ContainsAny(u.Name, " \t\r\n") {
		return User{}, fmt.Errorf("user %q: a name cannot contain spaces", u.Name)
	}
	if u.Password == "" {
		return User{}, fmt.Errorf("user %q: empty password", u.Name)
	}
	for _, f := range strings.Split(s[last+1:], ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "replication":
			u.Replication = true
		case "noreplication":
		case "admin":
			u.Admin = true
		default:
			return User{}, fmt.Errorf("user %q: unknown permission %q (want replication, noreplication or admin)", u.Name, f)
		}
	}
	return u, nil
}

// ParseUsers reads users one a line, in ParseUser's form; blank lines and lines starting with
// # are skipped. It reads --users-file and $PSYNC_PROXY_USERS.
func ParseUsers(text string) ([]User, error) {
	var users []User
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, err := ParseUser(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		users = append(users, u)
	}
	return users, nil
}

// CheckUsers refuses users that ParseUser would not have produced, and duplicate names.
func CheckUsers(users []User) error {
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, ": \t\r\n"):
			return fmt.Errorf("proxy: invalid user name %q", u.Name)
		case u.Name == "default":
			return errors.New("proxy: the default user's password is RequirePass, not a User")
		case u.Password == "":
			return fmt.Errorf("proxy: user %q has an empty password", u.Name)
		case seen[u.Name]:
			return fmt.Errorf("proxy: user %q is defined twice", u.Name)
		}
		seen[u.Name] = true
	}
	return nil
}

// redactUser keeps a password out of an error message about a malformed user.
func redactUser(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i] + ":..."
	}
	return s
}

// perm is what a user may run beyond the commands everyone may run.
type perm uint8

const (
	permReplication perm = 1 << iota
	permAdmin
	permAll = permReplication | permAdmin
)

// account is a user the proxy accepts. Only the SHA-256 of its password is kept, and every
// check compares digests in constant time, so a guess's timing says nothing of the password.
type account struct {
	name  string
	sum   [32]byte
	perms perm
}

// authenticator holds the downstream users. It never changes after New.
type authenticator struct {
	accounts map[string]*account
	// required is set when clients must AUTH: a requirepass or any user is configured. With
	// users and no requirepass, the default user is off, as Redis's "user default off".
	// Without it the default user has no password (Redis's nopass).
	required bool
}

func newAuthenticator(requirePass string, users []User) *authenticator {
	a := &authenticator{accounts: make(map[string]*account), required: requirePass != "" || len(users) > 0}
	if !a.required {
		// Redis's nopass default user: every client starts as it, with every permission.
		a.accounts["default"] = &account{name: "default", perms: permAll}
	} else if requirePass != "" {
		a.accounts["default"] = &account{name: "default", sum: sha256.Sum256([]byte(requirePass)), perms: permAll}
	}
	for _, u := range users {
		acc := &account{name: u.Name, sum: sha256.Sum256([]byte(u.Password))}
		if u.Replication {
			acc.perms |= permReplication
		}
		if u.Admin {
			acc.perms |= permAdmin
		}
		a.accounts[u.Name] = acc
	}
	return a
}

// check returns the account that name and pass authenticate, or nil. An unknown name costs
// the same digest comparison as a known one.
func (a *authenticator) check(name, pass string) *account {
	if !a.required && name == "default" {
		return a.accounts[name] // nopass accepts any password, as in Redis
	}
	sum := sha256.Sum256([]byte(pass))
	acc, ok := a.accounts[name]
	var want [32]byte
	if ok {
		want = acc.sum
	}
	if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 && ok {
		return acc
	}
	return nil
}

// initial is the user a new connection runs as: the default user when no password is
// required, else nobody until AUTH.
func (a *authenticator) initial() *account {
	if a.required {
		return nil
	}
	return a.accounts["default"]
}

const wrongPassMsg = "WRONGPASS invalid username-password pair or user is disabled."

// cmdAuth is AUTH [username] password, as Redis's authCommand: one argument names the
// default user. A failed AUTH leaves the connection as it was.
func cmdAuth(x *call) {
	name := "default"
	var pass string
	switch len(x.args) {
	case 1:
		if !x.p.auth.required {
			x.conn.WriteError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			return
		}
		pass = string(x.args[0])
	case 2:
		name, pass = string(x.args[0]), string(x.args[1])
	default:
		x.wrongArity()
		return
	}
	if x.login(name, pass) {
		x.conn.WriteString("OK")
	}
}

// login makes the client run as the user name and pass authenticate, or replies WRONGPASS
// and leaves it as it was.
func (x *call) login(name, pass string) bool {
	acc := x.p.auth.check(name, pass)
	if acc == nil {
		x.conn.WriteError(wrongPassMsg)
		return false
	}
	x.c.user = acc
	return true
}

// cmdHello speaks RESP2 only: HELLO 3 gets -NOPROTO so clients fall back, as they do with
// Redis 5. HELLO 2 AUTH username password authenticates as AUTH does.
func cmdHello(x *call) {
	args, conn := x.args, x.conn
	if len(args) > 0 {
		v, err := strconv.Atoi(string(args[0]))
		if err != nil {
			conn.WriteError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			conn.WriteError("NOPROTO unsupported protocol version")
			return
		}
		for i := 1; i < len(args); i++ {
			switch {
			case strings.EqualFold(string(args[i]), "auth") && i+2 < len(args):
				if !x.login(string(args[i+1]), string(args[i+2])) {
					return
				}
				i += 2
			case strings.EqualFold(string(args[i]), "setname") && i+1 < len(args):
				i++
				if !x.c.setName(string(args[i])) {
					conn.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
					return
				}
			default:
				conn.WriteError("ERR Syntax error in HELLO option '" + truncate(string(args[i]), 64) + "'")
				return
			}
		}
	}
	if x.c.user == nil {
		conn.WriteError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	conn.WriteArray(14)
	conn.WriteBulkString("server")
	conn.WriteBulkString("psync-proxy")
	conn.WriteBulkString("version")
	conn.WriteBulkString(x.p.cfg.Version)
	conn.WriteBulkString("proto")
	conn.WriteInt(2)
	conn.WriteBulkString("id")
	conn.WriteInt64(x.c.id)
	conn.WriteBulkString("mode")
	conn.WriteBulkString("standalone")
	conn.WriteBulkString("role")
	conn.WriteBulkString("replica")
	conn.WriteBulkString("modules")
	conn.WriteArray(0)
}
