// emailrelay-add-header.js -- an example filter for emailrelay on Windows.
//
// Adds one header line at the top of every message the relay accepts.
// In emailrelay.cfg:
//
//     filter C:\Program Files\E-MailRelay\examples\emailrelay-add-header.js
//
// (copy it elsewhere before you edit it: an upgrade replaces this folder).
//
// The relay runs a .js filter as
//     cscript.exe //nologo //B <this file> <content file> <envelope file>
// and reads its exit code: 0 accepts the message; 1 to 99 refuses it,
// with the reason on a <<...>> line of output. If the header cannot be
// added, this filter refuses the message with a temporary error (452), so
// the client keeps it and tries again later: nothing is lost.

var HEADER = "X-Relayed-By: emailrelay";

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
// anything fails half way, one whole copy of the message is still there.
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

function addHeader(args) {
    if (args.length < 1) {
        throw new Error("no content file given");
    }
    var fs = WScript.CreateObject("Scripting.FileSystemObject");
    var content = args(0);
    replaceFile(fs, content, HEADER + "\r\n" + readAll(fs, content));
}

var exitCode = 0;
try {
    addHeader(WScript.Arguments);
} catch (e) {
    say("<<cannot add a header>>");
    say("<<emailrelay-add-header.js: " + describe(e) + ">>");
    exitCode = 1;
}
WScript.Quit(exitCode);
