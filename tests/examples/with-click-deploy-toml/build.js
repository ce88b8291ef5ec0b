// Runs at build time: bakes the GREETING build variable into dist/server.js.
const fs = require("fs");

const greeting = process.env.GREETING || "GREETING was not set at build time";
const source = fs.readFileSync("src/server.js", "utf8").replace("__GREETING__", greeting);
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/server.js", source);
console.log("built dist/server.js");
