// emailrelay-set-sender.js -- an example filter for emailrelay on Windows.
//
// Edits the message's envelope: every message is sent on with SENDER
// below as its envelope sender (SMTP's MAIL FROM), whatever address the
// device that sent it used. Smarthosts such as Microsoft 365 or Gmail
// refuse a sender that is not the account you log in with (emailrelay.auth).
// A message with an empty sender (a bounce) keeps it empty. The From:
// header inside the message is not changed.
// In emailrelay.cfg:
//
//     filter C:\Program Files\E-MailRelay\examples\emailrelay-set-sender.js
//
// (copy it elsewhere before you edit it: an upgrade replaces this folder).
//
// The relay runs a .js filter as
//     cscript.exe //nologo //B <this file> <content file> <envelope file>
// and reads the envelope file again after the filter has run; exit code 0
// accepts the message, 1 to 99 refuse it with the reason on a <<...>> line.
// If the envelope cannot be edited the client gets a temporary error (452)
// and tries again later.

var SENDER = "relay@example.com";

var FOR_READING = 1;

// Writes a line to standard output. Windows' cscript has WScript.StdOut
// (its //B mode may keep WScript.Echo quiet); Wine's has only Echo.
function say(line) {
    try {
        WScript.StdOut.WriteLine(line);
    } catch (e) {
        WScript.Echo(line);
    }
}

// An exception's text; some errors from Windows objects carry only a number.
function describe(e) {
    var text = e.message || e.description;
    if (text) {
        return text;
    }
    return typeof e.number === "number" ? "error 0x" + (e.number >>> 0).toString(16) : String(e);
}

function readAll(fs, path) {
    var file = fs.OpenTextFile(path, FOR_READING, false);
    try {
        return file.AtEndOfStream ? "" : file.ReadAll();
    } finally {
        file.Close();
    }
}

// Writes the new text beside the old file, then puts it in its place: if
// anything fails half way, one whole copy of the envelope is still there.
function replaceFile(fs, path, text) {
    var temp = path + ".tmp";
    var file = fs.CreateTextFile(temp, true);
    try {
        file.Write(text);
    } finally {
        file.Close();
    }
    fs.DeleteFile(path);
    fs.MoveFile(temp, path);
}

function setSender(args) {
    if (args.length < 2) {
        throw new Error("no envelope file given");
    }
    var fs = WScript.CreateObject("Scripting.FileSystemObject");
    var envelope = args(1);
    var text = readAll(fs, envelope);
    var line = /^X-MailRelay-From: ([^\r\n]*)/m;
    var found = line.exec(text);
    if (found === null) {
        throw new Error("no X-MailRelay-From line in " + envelope);
    }
    if (found[1] === "" || found[1] === SENDER) {
        return;
    }
    replaceFile(fs, envelope, text.replace(line, function () {
        return "X-MailRelay-From: " + SENDER;
    }));
}

var exitCode = 0;
try {
    setSender(WScript.Arguments);
} catch (e) {
    say("<<cannot set the sender>>");
    say("<<emailrelay-set-sender.js: " + describe(e) + ">>");
    exitCode = 1;
}
WScript.Quit(exitCode);
