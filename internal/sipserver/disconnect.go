package sipserver

// Disconnect closes the TLS connection a device registered on (its remote
// address, registrar.Binding.Source). The operator deleted its account:
// the device must not stay connected, counted or reachable. Closing it
// ends the connection's reader, which tells the registrar as any closed
// connection does. An unknown source is not an error: it is gone already.
func (s *Server) Disconnect(source string) error {
	c, err := s.ua.TransportLayer().GetConnection("tls", source)
	if err != nil || c == nil {
		return nil
	}
	return c.Close()
}
