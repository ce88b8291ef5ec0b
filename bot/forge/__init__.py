"""What GitHub and GitLab share: the webhook core, what a delivery asks for, the paths a
service watches, the command runner over a small forge client interface."""
