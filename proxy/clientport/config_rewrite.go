package clientport

// configRewrite is CONFIG REWRITE: the live value of every option CONFIG GET knows goes back
// into the config file, by directive name, through Config.RewriteConfig, which keeps the
// file's comments and order as Redis does. Rewrites are serialized.
func configRewrite(x *call) {
	if len(x.args) != 1 {
		wrongArity(x.conn, "config|rewrite")
		return
	}
	p := x.p
	if p.cfg.RewriteConfig == nil {
		x.conn.WriteError("ERR The server is running without a config file")
		return
	}
	p.rewriteMu.Lock()
	defer p.rewriteMu.Unlock()
	if err := p.cfg.RewriteConfig(p.liveConfig()); err != nil {
		p.log.Warnf("CONFIG REWRITE failed: %v", err)
		x.conn.WriteError("ERR Rewriting config file: " + err.Error())
		return
	}
	p.log.Info("CONFIG REWRITE executed with success.")
	x.conn.WriteString("OK")
}

// liveConfig is every option's live value as its directive's arguments, by name.
func (p *Port) liveConfig() map[string][]string {
	live := map[string][]string{}
	for _, prm := range p.allParams() {
		if prm.args != nil {
			live[prm.name] = prm.args(p)
		} else {
			live[prm.name] = []string{prm.get(p)}
		}
	}
	return live
}
