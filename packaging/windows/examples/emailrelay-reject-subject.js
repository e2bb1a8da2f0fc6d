// emailrelay-reject-subject.js -- an example filter for emailrelay on Windows.
//
// Refuses every message whose Subject header matches PATTERN below (here:
// subjects that a scanner has tagged "[SPAM]"), and accepts the others.
// In emailrelay.cfg:
//
//     filter C:\Program Files\E-MailRelay\examples\emailrelay-reject-subject.js
//
// (copy it elsewhere before you edit it: an upgrade replaces this folder).
//
// The relay runs a .js filter as
//     cscript.exe //nologo //B <this file> <content file> <envelope file>
// and reads its exit code: 0 accepts the message; 1 to 99 refuses it. The
// first <<...>> line of output is the reply the client gets; a reply that
// starts with a code from 400 to 599 sets the SMTP reply code (otherwise it
// is 452, a temporary failure). The subject is matched as it is written in
// the message: an encoded subject (=?UTF-8?...?=) is not decoded.

var PATTERN = /\[SPAM\]/i;
var REPLY = "554 message refused: its subject is marked [SPAM]";

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

// The Subject header's value (folded lines joined), or null if there is
// none. Reads the header section only: it ends at the first empty line.
function subject(fs, path) {
    var file = fs.OpenTextFile(path, FOR_READING, false);
    var value = null;
    var inSubject = false;
    try {
        while (!file.AtEndOfStream) {
            var line = file.ReadLine();
            if (line === "") {
                break;
            }
            if (inSubject && /^[ \t]/.test(line)) {
                value += line;
                continue;
            }
            inSubject = value === null && /^subject:/i.test(line);
            if (inSubject) {
                value = line.substring(8);
            }
        }
    } finally {
        file.Close();
    }
    return value;
}

var exitCode = 0;
try {
    if (WScript.Arguments.length < 1) {
        throw new Error("no content file given");
    }
    var fs = WScript.CreateObject("Scripting.FileSystemObject");
    var value = subject(fs, WScript.Arguments(0));
    if (value !== null && PATTERN.test(value)) {
        say("<<" + REPLY + ">>");
        exitCode = 1;
    }
} catch (e) {
    say("<<cannot read the message>>");
    say("<<emailrelay-reject-subject.js: " + describe(e) + ">>");
    exitCode = 1;
}
WScript.Quit(exitCode);
