const http = require("http");
const ms = require("ms"); // resolved by Plug'n'Play from .yarn/cache

const port = Number(process.env.PORT || 8080);
http
  .createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/plain" });
    response.end(`hello from node-yarn4-pnp (${ms(60000)})\n`);
  })
  .listen(port, "0.0.0.0", () => console.log("node-yarn4-pnp listening on " + port));
