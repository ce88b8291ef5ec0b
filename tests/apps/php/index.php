<?php
declare(strict_types=1);

$name = htmlspecialchars($_GET['name'] ?? 'PHP', ENT_QUOTES);
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>PHP</title></head>
<body>
<h1>Hello from <?= $name ?> <?= PHP_MAJOR_VERSION ?></h1>
</body>
</html>
